"""Bad input to the FMCS-Dataset and FMCE-Net gets a clear error."""
import math

import pytest
import torch
from torch.testing import assert_close

from fmce_nb.runs import TrainConfig
from fmce_nb.checkpoints import keep_only
from fmce_nb.train import train
from fmce_nb.fmcs import FMCSData, FMCSStore
from fmce_nb.fmce_net import FMCENet, fmcs_score, load_fmce_net


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    return train(TrainConfig(dataset='digits', arch='small_cnn', epochs=4, size=16, n_train=128, n_test=64),
                 tmp_path_factory.mktemp('r')/'run')


def test_empty_run_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match='not a run folder'):
        FMCSData(tmp_path, [1, 2])


def test_markers_pointing_at_pruned_checkpoints(run, tmp_path):
    import shutil
    copy = tmp_path/'copy'; shutil.copytree(run.dir, copy)
    keep_only(copy, [2, 4])
    with pytest.raises(FileNotFoundError, match=r'markers \[1, 3\] point at checkpoints'):
        FMCSData(copy, [1, 2, 3, 4])


def test_feature_map_of_the_wrong_shape(run):
    fm = FMCSData(run, [2, 4])
    net = FMCENet(fm.feature_shape[0] * 2, 2)
    x, _ = next(fm.batches([[0, 0], [1, 1]], 2))
    with pytest.raises(ValueError, match='channel'):
        net(x)
    with pytest.raises(ValueError, match=r'\(B, C, H, W\)'):
        net(x[0])


def test_score_of_a_named_module(run):
    fm = FMCSData(run, [2, 4])
    net = FMCENet(64, 2)            # small_cnn's second block outputs 64 channels
    model = run.model()
    with torch.no_grad(): net.fc.weight.zero_(); net.fc.bias.copy_(torch.tensor([0., math.log(3)]))
    s = fmcs_score(net, model.net, fm.loader.transform(torch.arange(8)), module='features.1')
    # logits (0, log 3) for every map: p = (1/4, 3/4), E[FMCS] = 1/4 + 2 * 3/4 = 1.75
    assert_close(torch.tensor(s['distribution']), torch.tensor([0.25, 0.75]))
    assert s['most_likely'] == 2 and abs(s['expected_fmcs'] - 1.75) < 1e-6
    with pytest.raises(ValueError, match='Closest'):
        fmcs_score(net, model.net, fm.loader.transform(torch.arange(8)), module='features.9')


def test_missing_store_and_net(tmp_path):
    with pytest.raises(FileNotFoundError, match='not an FMCS store'):
        FMCSStore(tmp_path)
    with pytest.raises(FileNotFoundError, match='fmce_net.json'):
        load_fmce_net(tmp_path)
