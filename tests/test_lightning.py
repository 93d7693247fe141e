"""FMCECallback in a real lightning.Trainer, on the embedded digits, on the CPU: its losses, CQI, stop, checkpoints and markers."""
import json, logging, warnings

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
import lightning as L

from fmce_nb.cqi import Markers
from fmce_nb.data import load_dataset
from fmce_nb.lightning import FMCECallback

logging.getLogger('lightning.pytorch').setLevel(logging.WARNING)
MU = 1e-3


def data():
    d = load_dataset('mnist5k', train=True)
    return d.images[:500].float() / 255, d.labels[:500]


class Classifier(L.LightningModule):
    def __init__(self, skip=False):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(4), nn.Flatten(), nn.Linear(8 * 7 * 7, 10))
        self.seen, self.skip = [], skip
    def training_step(self, batch, batch_idx):
        loss = nn.functional.cross_entropy(self.net(batch[0]), batch[1])
        self.seen.append((self.current_epoch, loss.item(), len(batch[0])))
        return None if self.skip else loss
    def configure_optimizers(self): return torch.optim.Adam(self.parameters(), lr=1e-2)


def fit(cb, max_epochs=200, skip=False, log_dir=None, quiet=True):
    L.seed_everything(0, verbose=False)
    x, y = data()
    logger = L.pytorch.loggers.CSVLogger(log_dir) if log_dir else False
    trainer = L.Trainer(max_epochs=max_epochs, callbacks=[cb], logger=logger, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=1)
    model = Classifier(skip)
    with warnings.catch_warnings():
        if quiet: warnings.simplefilter('ignore')                  # Lightning's advice on workers and logging intervals
        trainer.fit(model, DataLoader(TensorDataset(x, y), batch_size=96, shuffle=True))   # 5 batches of 96 and one of 20
    return trainer, model


def by_hand(model, epochs):
    "Each epoch's loss as the mean over its samples, the EMA (alpha .85), CQI over B = 5, the first epoch after the peak with CQI <= MU."
    seen = np.array(model.seen)
    L_m = np.array([np.average(seen[seen[:, 0] == e, 1], weights=seen[seen[:, 0] == e, 2]) for e in range(epochs)])
    S = [L_m[0]]
    for l in L_m[1:]: S.append(0.85 * S[-1] + 0.15 * l)
    D = np.abs(np.diff(S))
    cqi = np.array([np.nan] + [D[max(0, m - 6):m - 1].mean() for m in range(2, len(S) + 1)])   # cqi[m-1] = CQI_m
    peak = int(np.argmax(L_m)) + 1
    after = [m for m in range(peak + 1, epochs + 1) if cqi[m - 1] <= MU]
    return L_m, cqi, (after[0] if after else None)


@pytest.fixture(scope='module')
def stopped(tmp_path_factory):
    d = tmp_path_factory.mktemp('stop')
    cb = FMCECallback(d/'ckpts', K=4, mu=MU)
    trainer, model = fit(cb, log_dir=d)
    return cb, trainer, model


def test_the_epoch_loss_is_the_sample_weighted_mean_of_the_batch_losses(stopped):
    cb, trainer, model = stopped
    L_m, _, _ = by_hand(model, trainer.current_epoch)
    np.testing.assert_allclose(cb.monitor.losses, L_m, rtol=1e-6)


def test_it_logs_cqi_and_stops_at_the_convergence_epoch(stopped):
    cb, trainer, model = stopped
    import pandas as pd
    _, cqi, ek = by_hand(model, trainer.current_epoch)
    assert ek is not None and trainer.current_epoch == ek == cb.markers.ek
    logged = pd.read_csv(f'{trainer.logger.log_dir}/metrics.csv').dropna(subset=['cqi'])
    assert logged['epoch'].tolist() == list(range(1, ek))          # Lightning's epoch m - 1 is our epoch m, from m = 2
    np.testing.assert_allclose(logged['cqi'], cqi[1:], rtol=1e-5)
    raw = pd.read_csv(f'{trainer.logger.log_dir}/metrics.csv', keep_default_na=False, dtype=str)
    assert raw.loc[raw['epoch'] == '0', 'cqi'].tolist() == ['']     # CQI_1 is undefined: nothing logged, not a NaN


def test_only_the_marker_checkpoints_stay_and_the_markers_are_written(stopped):
    cb, _, _ = stopped
    assert cb.checkpoints.saved_epochs() == list(cb.markers.markers)
    written = Markers.from_dict(json.loads((cb.checkpoints.folder/'markers.json').read_text()))
    assert written.markers == cb.markers.markers and written.converged
    ck = torch.load(cb.checkpoints[cb.markers.ek], weights_only=True)
    assert sorted(ck['state_dict']) == ['net.0.bias', 'net.0.weight', 'net.4.bias', 'net.4.weight']


def test_without_stop_it_trains_on_and_keeps_the_markers_and_the_last(stopped, tmp_path):
    ek = stopped[0].markers.ek
    cb = FMCECallback(tmp_path, K=4, mu=MU, stop=False, keep_last=True)
    trainer, _ = fit(cb, max_epochs=ek + 3)
    assert trainer.current_epoch == ek + 3 and cb.markers.ek == ek
    assert cb.checkpoints.saved_epochs() == [*stopped[0].markers.markers, ek + 3]


def test_a_curve_that_never_converges_keeps_every_checkpoint_and_says_its_smallest_cqi(tmp_path):
    cb = FMCECallback(tmp_path, K=2, mu=MU)
    with pytest.warns(UserWarning, match='no epoch markers, every checkpoint kept.*the smallest CQI is'):
        fit(cb, max_epochs=3, quiet=False)
    assert cb.checkpoints.saved_epochs() == [1, 2, 3] and not (tmp_path/'markers.json').exists()


def test_a_training_step_without_a_loss_is_refused(tmp_path):
    with pytest.raises(ValueError, match='return it from training_step'):
        fit(FMCECallback(tmp_path), max_epochs=1, skip=True)


def test_its_state_is_the_loss_curve(stopped, tmp_path):
    cb = FMCECallback(tmp_path, K=4, mu=MU)
    cb.load_state_dict(stopped[0].state_dict())
    assert cb.monitor.losses == stopped[0].monitor.losses
    assert cb.monitor.converged_epoch == stopped[0].monitor.converged_epoch and cb.markers.markers == stopped[0].markers.markers
