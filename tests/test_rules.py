"""Each rule of the papers and of the project's conventions, pinned by a value worked out by hand (shown in the
comments), never by calling the code under test for the expected value."""
import math

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from fmce_nb.cqi import smooth, cqi, convergence_epoch, epoch_markers, paper_mu


def close(actual, expected, **kw):
    "assert_close on float64 arrays: checks shapes (and so lengths) as well as values."
    assert_close(torch.as_tensor(np.asarray(actual, dtype=float)), torch.as_tensor(np.asarray(expected, dtype=float)), **kw)


# --- smoothing, both readings (FMCE IV-B; SPEC section 2) ---------------------------------------------------------

def test_ema_smoothing():
    # S1 = L1 = 4; S2 = .5*4 + .5*2 = 3; S3 = .5*3 + .5*1 = 2; S4 = .5*2 + .5*5 = 3.5
    close(smooth([4., 2., 1., 5.], alpha=0.5), [4., 3., 2., 3.5])
    # alpha = 0.85 on L = [10, 4]: S2 = .85*10 + .15*4 = 8.5 + 0.6 = 9.1
    close(smooth([10., 4.], alpha=0.85), [10., 9.1])


def test_paper_smoothing_uses_the_raw_previous_loss():
    # S1 = L1; Sm = a*L(m-1) + (1-a)*Lm: S2 = .5*4 + .5*2 = 3, S3 = .5*2 + .5*1 = 1.5, S4 = .5*1 + .5*5 = 3
    close(smooth([4., 2., 1., 5.], alpha=0.5, method='paper'), [4., 3., 1.5, 3.])


# --- CQI window -----------------------------------------------------------------------------------------------------

def test_cqi_is_the_mean_absolute_step_over_the_last_B_epochs():
    L = [8., 4., 2., 1., 1., 1.]
    # EMA with a = .5: S = 8, 6, 4, 2.5, 1.75, 1.375 -> |D2..D6| = 2, 2, 1.5, .75, .375
    # B = 2: CQI2 = 2 (only D2), CQI3 = (2+2)/2, CQI4 = (2+1.5)/2, CQI5 = (1.5+.75)/2, CQI6 = (.75+.375)/2
    close(cqi(L, alpha=0.5, window=2), [math.nan, 2., 2., 1.75, 1.125, 0.5625], equal_nan=True)
    # B = 3: CQI3 = (2+2)/2 (D2, D3 only), CQI4 = (2+2+1.5)/3, CQI5 = (2+1.5+.75)/3, CQI6 = (1.5+.75+.375)/3
    close(cqi(L, alpha=0.5, window=3), [math.nan, 2., 2., 5.5 / 3, 4.25 / 3, 2.625 / 3], equal_nan=True)


# --- E_0, E_K, markers, G ---------------------------------------------------------------------------------------------

def test_e0_is_the_raw_peak_and_ek_must_come_after_it():
    L = [2., 2., 3., 1.5, 1.2, 1.2, 1.2]
    # paper smoothing, a = .5: S = 2, 2, 2.5, 2.25, 1.35, 1.2, 1.2; B = 1: CQI = |D| = -, 0, .5, .25, .9, .15, 0
    # E_0 = 3 (raw peak). CQI2 = 0 <= mu but 2 is not after E_0; the first m > 3 with CQI <= .2 is 6.
    e0, ek, converged, c = convergence_epoch(L, mu=0.2, alpha=0.5, window=1, smoothing='paper')
    assert (e0, ek, converged) == (3, 6, True)
    close(c, [math.nan, 0., .5, .25, .9, .15, 0.], equal_nan=True)


def test_markers_cut_equal_log_drops_and_break_ties_toward_the_earlier_epoch():
    # paper smoothing, a = .5, on L = 16, 8, 4, 4, 4, 2, 1, 1, 1:
    #   S = 16, 12, 6, 4, 4, 3, 1.5, 1, 1      (S4 = S5 = 4 exactly: a plateau)
    #   |D2..D9| = 4, 6, 2, 0, 1, 1.5, .5, 0;  B = 2: CQI = -, 4, 5, 4, 1, .5, 1.25, 1, .25
    # mu = .3 -> E_K = 9 (CQI6 = .5 is above it); E_0 = 1; G = ln 16 - ln 1 = ln 16.
    # K = 2: the target k*G/K = ln 4, and epochs 4 and 5 both drop by exactly ln 16 - ln 4: a tie -> epoch 4.
    L = [16., 8., 4., 4., 4., 2., 1., 1., 1.]
    mk = epoch_markers(L, K=2, mu=0.3, alpha=0.5, window=2, smoothing='paper')
    assert (mk.e0, mk.markers, mk.converged) == (1, (4, 9), True)
    close(mk.G, math.log(16))
    close(mk.smoothed, [16., 12., 6., 4., 4., 3., 1.5, 1., 1.])
    # K = 4: targets ln 2, ln 4, ln 8 -> drops ln(16/12)=.29, ln(16/6)=.98, ln 4 (x2), ln(16/3)=1.67, ln(16/1.5)=2.37:
    # ln 2 = .69 is nearest .98 (epoch 3); ln 4 ties epochs 4 and 5 -> 4; ln 8 = 2.08 is nearest 2.37 (epoch 7)
    assert epoch_markers(L, K=4, mu=0.3, alpha=0.5, window=2, smoothing='paper').markers == (3, 4, 7, 9)


def test_the_paper_threshold_rule():
    assert (paper_mu(2), paper_mu(10), paper_mu(99), paper_mu(100), paper_mu(1000)) == (1e-4, 1e-4, 1e-4, 1e-3, 1e-3)
    for bad in (1, 0, 2.5, 10.5):
        with pytest.raises(ValueError, match='num_classes must be an integer >= 2'): paper_mu(bad)


# --- the FMCS label of each map (FMCE V-B) --------------------------------------------------------------------------

@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory):
    from fmce_nb.runs import TrainConfig
    from fmce_nb.train import train
    return train(TrainConfig(dataset='digits', arch='small_cnn', epochs=4, size=16, batch_size=64, n_train=96,
                             n_test=64, device='cpu'), tmp_path_factory.mktemp('r')/'run')


def test_cached_maps_are_the_maps_computed_batch_by_batch(tiny_run):
    from fmce_nb.fmcs import FMCSData
    fly, cached = FMCSData(tiny_run, (1, 3, 4), 'cpu'), FMCSData(tiny_run, (1, 3, 4), 'cpu', cache=True)
    assert fly._cache is None and cached._cache is None                          # computed at the first read
    cached.maps([0], [0])
    assert fly._cache is None and cached._cache.shape == (3, 96, 128, 2, 2)      # 16 px: the last block's map is 2x2
    n, k = np.array([0, 5, 9, 95, 40]), np.array([0, 0, 1, 2, 2])
    assert_close(cached.maps(n, k), fly.maps(n, k))


def test_every_map_labelled_k_is_the_backbone_output_of_the_checkpoint_at_marker_k(tiny_run):
    from fmce_nb.fmcs import FMCSData, all_pairs, plan_epoch
    markers = (1, 3, 4)
    fm = FMCSData(tiny_run, markers, 'cpu', amp=False)    # fp32, pinned: the reference below is fp32
    backbones = [tiny_run.model(e).eval() for e in markers]       # loaded here, independently of FMCSData
    pairs = all_pairs(fm.N, 3)
    plans = plan_epoch(pairs, 40, shuffle=True, seed=7, epoch=2)
    batches = list(fm.batches(pairs, 40, shuffle=True, seed=7, epoch=2))
    assert len(batches) == len(plans) == math.ceil(len(pairs) / 40)
    seen = set()
    for (maps, labels), (n, k, _) in zip(batches, plans):
        assert_close(labels, torch.as_tensor(k))
        x = fm.loader.transform(torch.as_tensor(n))
        with torch.no_grad():
            want = torch.stack([backbones[int(kk)].features(x[i:i + 1])[0] for i, kk in enumerate(k)])
        assert_close(maps, want, rtol=1e-5, atol=1e-5)
        seen |= set(zip(n.tolist(), k.tolist()))
    assert seen == set(map(tuple, pairs.tolist()))                 # every (image, phase) pair once


# --- FMCE-Net's layers (FMCE V-C; SPEC section 2) -------------------------------------------------------------------

def test_fmce_net_layer_sequence_and_shapes():
    from torch import nn
    from fmce_nb.fmce_net import FMCENet, HalvingMaxPool
    net = FMCENet(1024, 10)
    kinds = [type(m).__name__ for m in net.body] + [type(net.fc).__name__]
    assert kinds == ['Conv2d', 'HalvingMaxPool', 'ReLU', 'Conv2d', 'HalvingMaxPool', 'ReLU', 'AdaptiveMaxPool2d',
                     'Flatten', 'Linear']
    convs = [m for m in net.body if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.padding) for c in convs] == \
        [(1024, 512, (3, 3), (1, 1)), (512, 256, (3, 3), (1, 1))]
    assert (net.fc.in_features, net.fc.out_features) == (256, 10)
    # 7x7 -> conv 7x7 -> pool 3x3 -> conv 3x3 -> pool 1x1: 256 x 1 x 1 (the paper's shapes)
    h = torch.zeros(2, 1024, 7, 7)
    shapes = []
    for m in net.body: h = m(h); shapes.append(tuple(h.shape[1:]))
    assert shapes[:6] == [(512, 7, 7), (512, 3, 3), (512, 3, 3), (256, 3, 3), (256, 1, 1), (256, 1, 1)]
    wide = FMCENet(2048, 10)       # ResNet-50's layer4: one more conv first, 2048 -> 1024, and its ReLU
    assert [type(m).__name__ for m in wide.body][:2] == ['Conv2d', 'ReLU'] and wide.body[0].out_channels == 1024
    assert wide(torch.zeros(1, 2048, 1, 1)).shape == (1, 10)       # 1x1 maps pass: pooling stops at 1x1


def test_fmce_net_relus_act():
    from fmce_nb.fmce_net import FMCENet
    net = FMCENet(8, 2)
    with torch.no_grad():
        for m in net.body:
            if isinstance(m, torch.nn.Conv2d): m.weight.zero_(); m.bias.fill_(-1.)    # every conv outputs -1
        net.fc.weight.fill_(1.); net.fc.bias.zero_()
    # ReLU after each conv turns -1 into 0, so the logits are the fc bias: exactly zero
    assert_close(net(torch.randn(3, 8, 4, 4)), torch.zeros(3, 2))


# --- Table II metrics: macro averages (FMCE V-D) --------------------------------------------------------------------

def test_metrics_are_macro_averaged():
    from fmce_nb.fmce_net import metrics
    # true 0 0 0 1, predicted 0 0 1 1: accuracy 3/4. Class 0: P = 2/2, R = 2/3, F1 = .8; class 1: P = 1/2, R = 1,
    # F1 = 2/3. Macro: P = .75, R = 5/6, F1 = 11/15 (micro would give .75 for all three).
    m = metrics([0, 0, 0, 1], [0, 0, 1, 1], K=2)
    close([m['accuracy'], m['precision'], m['recall'], m['f1']], [0.75, 0.75, 5 / 6, 11 / 15])
    assert m['confusion'] == [[2, 1], [0, 1]] and m['n'] == 4


def test_metrics_average_over_all_K_phases_even_one_never_seen():
    from fmce_nb.fmce_net import metrics
    # K = 3, true 0 0 1, predicted 0 1 1; phase 3 (index 2) never occurs. Class 0: P = 1/1, R = 1/2, F1 = 2/3;
    # class 1: P = 1/2, R = 1/1, F1 = 2/3; class 2: P = R = F1 = 0 (0/0 counts as 0). Macro over the K = 3 phases:
    # P = 1.5/3, R = 1.5/3, F1 = (4/3)/3; averaging over the 2 phases seen would give .75, .75, 2/3.
    m = metrics([0, 0, 1], [0, 1, 1], K=3)
    close([m['accuracy'], m['precision'], m['recall'], m['f1']], [2 / 3, 0.5, 0.5, 4 / 9])
    assert m['confusion'] == [[1, 1, 0], [0, 1, 0], [0, 0, 0]]


# --- the epoch loss is the mean of its batch losses (FMCE IV-A) -----------------------------------------------------

def test_epoch_loss_is_the_mean_of_its_batches():
    from fmce_nb.data import load_dataset, DeviceLoader
    from fmce_nb.train import train_epoch
    data = load_dataset('synthetic', n=256, size=8)
    dl = DeviceLoader(data, 64, 8, train=True, seed=0)               # 4 batches of 64
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 64, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    calls = []
    def objective(m, x, y, idx):                                     # batch i (from 1) has loss i
        calls.append(len(y))
        return m(x).sum() * 0 + len(calls)
    assert train_epoch(model, dl, opt, 1, objective=objective) == pytest.approx((1 + 2 + 3 + 4) / 4)
    assert calls == [64] * 4


# --- the loader: every path gives (B, 3, S, S), normalized ----------------------------------------------------------

@pytest.mark.parametrize('grey', [True, False])
@pytest.mark.parametrize('train', [True, False])
@pytest.mark.parametrize('size', [8, 16, 24])
def test_loader_shapes_and_normalization(grey, train, size):
    from fmce_nb.data import load_dataset, DeviceLoader
    data = load_dataset('synthetic', n=256, size=16, channels=1 if grey else 3)
    dl = DeviceLoader(data, 64, size, train=train, augment=False, seed=0)
    x, y = next(iter(dl))
    assert x.shape == (64, 3, size, size) and x.dtype == torch.float32 and y.shape == (64,)
    if grey: assert_close(x[:, 0], x[:, 2])                          # one grey channel copied to three
    allx = torch.cat([b[0] for b in dl.batches(0)])
    if size == 16:                                                   # no resampling: exactly standardized per channel
        mean, std = allx.mean((0, 2, 3)), allx.std((0, 2, 3), unbiased=False)
        assert_close(mean, torch.zeros(3), atol=1e-5, rtol=0)
        assert_close(std, torch.ones(3), atol=1e-3, rtol=0)
    xa, _ = next(iter(DeviceLoader(data, 64, size, train=train, augment=True, seed=0)))
    assert xa.shape == (64, 3, size, size)


# --- edges of the rules, found by mutation testing ----------------------------------------------------------------

def test_cqi_equal_to_mu_counts_as_converged():
    # paper smoothing, a = .5, L = 4, 2, 1, 1, 1: S = 4, 3, 1.5, 1, 1; B = 1: CQI = -, 1, 1.5, .5, 0 (all exact in binary)
    e0, ek, converged, _ = convergence_epoch([4., 2., 1., 1., 1.], mu=0.5, alpha=0.5, window=1, smoothing='paper')
    assert (e0, ek, converged) == (1, 4, True)                       # CQI_4 = mu exactly: <=, not <


def test_markers_on_a_curve_with_a_known_answer():
    # L_m = exp(-(m-1)/2), a ~ 0, B = 1: CQI_m = e^{-(m-2)/2}(1 - e^{-1/2}); mu between CQI_11 and CQI_10 -> E_K = 11;
    # the log drop from E_0 = 1 is (m-1)/2, so G = 5 and K = 10 phases of 1/2 each: markers 2, 3, ..., 11.
    # E_K - E_0 = 10 = K exactly: the smallest gap that still holds K markers.
    L = np.exp(-np.arange(30) / 2)
    mu = (np.exp(-4.5) + np.exp(-4)) / 2 * (1 - np.exp(-0.5))
    mk = epoch_markers(L, K=10, mu=mu, alpha=1e-9, window=1)
    assert mk.markers == tuple(range(2, 12))
    close(mk.G, 5.0, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match=r'only 9 epochs lie in \(E_0, E_K\] = \(1, 10\]: too few for K=10'):
        epoch_markers(L, K=10, mu=(np.exp(-4) + np.exp(-3.5)) / 2 * (1 - np.exp(-0.5)), alpha=1e-9, window=1)


def test_G_is_the_drop_of_the_smoothed_loss_not_of_the_raw_one():
    # ema, a = .5, L = 4, 2, 1, 1, ...: S = 4, 3, 2, 1.5, 1.25, 1.125, 1.0625; D = -1, -1, -.5, -.25, -.125, -.0625.
    # B = 2: CQI_6 = (.25 + .125)/2 = .1875 > mu = .1, CQI_7 = (.125 + .0625)/2 = .09375 <= mu -> E_0 = 1, E_K = 7.
    # G = |log S_7 - log S_1| = log(4 / 1.0625) = 1.32567 (the raw loss would give log 4 = 1.38629).
    # K = 3: targets G/3 = .44189, 2G/3 = .88378 against the drops log(4/S_m) = .28768, .69315, .98083, ... of
    # epochs 2, 3, 4: nearest are epochs 2 and 4.
    mk = epoch_markers([4., 2., 1., 1., 1., 1., 1., 1.], K=3, mu=0.1, alpha=0.5, window=2)
    G = math.log(4 / 1.0625)
    close(mk.targets, [G / 3, 2 * G / 3], rtol=0, atol=1e-12)
    close(mk.G, G, rtol=0, atol=1e-12)
    assert (mk.e0, mk.markers) == (1, (2, 4, 7))


def test_the_cosine_schedule_steps_once_per_epoch_not_per_batch(tmp_path):
    # 160 images in batches of 32: 5 optimizer steps an epoch. Stepped once per epoch over 4 epochs, epoch m trains at
    # lr_m = 1e-3 (1 + cos(pi (m - 1) / 4)) / 2 = 1e-3, 8.5355e-4, 5e-4, 1.4645e-4. Stepped per batch, epoch 2 would
    # start 5 steps in, past the end of the 4-step period (lr 1e-3 (1 + cos(5 pi / 4)) / 2 = 1.4645e-4).
    from fmce_nb.runs import TrainConfig
    from fmce_nb.train import train
    cfg = TrainConfig(dataset='digits', arch='small_cnn', epochs=4, size=16, batch_size=32, n_train=160, n_test=64,
                      device='cpu')
    run = train(cfg, tmp_path/'run')
    by_hand = [1e-3, 1e-3 * (1 + math.sqrt(0.5)) / 2, 5e-4, 1e-3 * (1 - math.sqrt(0.5)) / 2]
    close(run.history['lr'], by_hand, rtol=0, atol=1e-15)
    # the saved state agrees: 4 schedule steps in all (20 if stepped per batch), leaving the period's end value, 0
    state = torch.load(run.dir/'state.pt', weights_only=True)
    assert state['sched']['last_epoch'] == 4
    close([state['opt']['param_groups'][0]['lr']], [0.0], rtol=0, atol=1e-15)


def test_a_constant_schedule_keeps_the_learning_rate_and_stays_in_the_run_id(tmp_path):
    # FR-PT's post-training: lr 5e-5 in each of 3 epochs; the default ('cosine') stays out of the identity, so the
    # run ids made before the field existed do not change
    from fmce_nb.runs import TrainConfig, run_id
    from fmce_nb.train import train
    cfg = TrainConfig(dataset='digits', arch='small_cnn', epochs=3, size=16, batch_size=64, n_train=96, n_test=64,
                      lr=5e-5, optimizer='adamw', schedule='constant', device='cpu')
    close(train(cfg, tmp_path/'run').history['lr'], [5e-5] * 3, rtol=0, atol=0)
    assert 'schedule' not in TrainConfig().identity() and TrainConfig(schedule='constant').identity()['schedule'] == 'constant'
    assert run_id(TrainConfig()) != run_id(TrainConfig(schedule='constant'))
    with pytest.raises(ValueError, match="schedule must be 'cosine' or 'constant'"): TrainConfig(schedule='step')


def test_the_maps_of_phase_k_come_from_the_checkpoint_of_marker_k(tiny_run):
    from safetensors.torch import load_file
    from fmce_nb.fmcs import FMCSData
    from fmce_nb.runs import weights_path
    markers = (1, 2, 3)                                     # epoch 4 exists too, so a shifted checkpoint would load
    fm = FMCSData(tiny_run, markers, 'cpu')
    for k, e in enumerate(markers):
        want = load_file(weights_path(tiny_run.dir, e))     # the file of epoch E_k, read here directly
        got = fm.backbones[k].state_dict()
        for name in ('net.fc.weight', 'net.features.0.0.weight'):
            assert_close(got[name].contiguous(), want[name], rtol=0, atol=0)


def test_markers_need_K_plus_one_epochs():
    # EMA a = .5 on 8, 4, 3.5: S = 8, 6, 4.75; |D| = 2, 1.25; mu = 1.5 -> E_K = 3; G = ln(8/4.75); K = 2: the target
    # G/2 = .26 is nearest the drop of epoch 2, ln(8/6) = .29 (epoch 3's is .52): markers 2, 3. Three epochs suffice.
    assert epoch_markers([8., 4., 3.5], K=2, mu=1.5, alpha=0.5, window=1).markers == (2, 3)
    with pytest.raises(ValueError, match='need at least 3 epochs'):
        epoch_markers([8., 4.], K=2, mu=1.5, alpha=0.5, window=1)


def test_the_unconverged_error_carries_the_smallest_cqi_and_its_epoch():
    from fmce_nb.cqi import NotConvergedError
    # L falls linearly by d = 2/39: |D_m| = d (1 - .85^(m-1)) grows with m, so the smallest CQI is CQI_2 = .15 d
    with pytest.raises(NotConvergedError) as e:
        convergence_epoch(np.linspace(3, 1, 40), mu=1e-4)
    assert (e.value.epoch, e.value.mu) == (2, 1e-4) and e.value.min_cqi == pytest.approx(0.15 * 2 / 39, rel=1e-12)
    # a peak at the last epoch leaves nothing to converge, even with the 'last' fallback
    with pytest.raises(NotConvergedError, match='peaks at the last epoch'):
        convergence_epoch([1., 2., 3.], mu=1e-4, on_no_convergence='last')
    e0, ek, converged, _ = convergence_epoch(np.linspace(3, 1, 40), mu=1e-4, on_no_convergence='last')
    assert (e0, ek, converged) == (1, 40, False)
    with pytest.raises(ValueError, match='mu must be a positive number'):
        convergence_epoch(np.linspace(3, 1, 40), mu=-1.0)


def test_smoothing_of_one_epoch_and_an_unknown_method():
    close(smooth([5.]), [5.])
    with pytest.raises(ValueError, match='smoothing must be one of'):
        smooth([3., 2., 1.], method='median')


def test_halving_pool_edges():
    from fmce_nb.fmce_net import HalvingMaxPool, FMCENet
    x = torch.arange(4.).view(1, 1, 2, 2)
    assert_close(HalvingMaxPool()(x), torch.tensor([[[[3.]]]]))                      # 2x2 -> 1x1, the max
    assert_close(HalvingMaxPool()(x[..., :1]), torch.tensor([[[[2.]]]]))             # 2x1 -> 1x1
    assert_close(HalvingMaxPool()(x[..., :1, :]), torch.tensor([[[[1.]]]]))          # 1x2 -> 1x1
    assert_close(HalvingMaxPool()(x[..., :1, :1]), x[..., :1, :1])                   # 1x1 stays
    assert FMCENet(1025, 3).body[0].out_channels == 1024 and FMCENet(1024, 3).body[0].out_channels == 512


def test_plan_epoch_shuffles_by_seed_and_epoch_and_keeps_order_otherwise():
    from fmce_nb.fmcs import plan_epoch, all_pairs
    pairs = all_pairs(20, 3)
    flat = lambda plan: [tuple(p) for n, k, _ in plan for p in zip(n.tolist(), k.tolist())]
    plain = plan_epoch(pairs, 7, shuffle=False)
    # unshuffled: batch i holds pairs 7i..7i+6, each batch sorted by phase (stable)
    want = [tuple(p) for i in range(0, 60, 7) for p in sorted(pairs[i:i + 7].tolist(), key=lambda q: q[1])]
    assert flat(plain) == want
    a, b, c = (flat(plan_epoch(pairs, 7, shuffle=True, seed=1, epoch=e)) for e in (0, 0, 1))
    assert a == b and a != c and a != want and sorted(a) == sorted(map(tuple, pairs.tolist()))
    with pytest.raises(ValueError, match='no samples'):
        plan_epoch(np.zeros((0, 2), dtype=int), 7)


def test_train_epoch_reads_the_batches_of_its_epoch_in_fp32_on_the_cpu():
    from fmce_nb.data import load_dataset, DeviceLoader
    from fmce_nb.train import train_epoch
    import torch.nn.functional as F
    data = load_dataset('synthetic', n=256, size=8)
    dl = DeviceLoader(data, 64, 8, train=True, seed=3)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 64, 10))
    seen = []
    def objective(m, x, y, idx):
        seen.append(idx.clone())
        return F.cross_entropy(m(x), y)
    loss = train_epoch(model, dl, torch.optim.SGD(model.parameters(), lr=0.0), 3, objective=objective)
    planned = [idx for _, _, idx in dl.batches(2, with_index=True)]             # epoch 3 reads plan 2 (1-based)
    assert len(seen) == len(planned) == 4 and all(torch.equal(a, b) for a, b in zip(seen, planned))
    with torch.no_grad():                                                      # lr 0: the same model for every batch
        want = np.mean([F.cross_entropy(model(x), y).item() for x, y in dl.batches(2)])
    assert loss == pytest.approx(want, rel=1e-6)                               # fp32: no bf16 autocast on the CPU


def test_markers_carry_their_settings_and_curves():
    L = np.exp(-np.arange(30) / 2)
    mu = (np.exp(-4.5) + np.exp(-4)) / 2 * (1 - np.exp(-0.5))
    mk = epoch_markers(L, K=10, mu=mu, alpha=1e-9, window=1)
    assert (mk.K, mk.mu, mk.e0, mk.ek) == (10, mu, 1, 11)
    close(mk.targets, np.arange(1, 10) * 0.5, rtol=0, atol=1e-6)            # k G / K with G = 5
    m = np.arange(2, 31)
    close(mk.cqi[1:], np.exp(-(m - 2) / 2) * (1 - np.exp(-0.5)), rtol=1e-6, atol=0)   # CQI_m by hand, m = 2..30


def test_the_unconverged_message_names_the_epoch_of_the_smallest_cqi():
    from fmce_nb.cqi import NotConvergedError
    # L = e^{-(m-1)/4} under the EMA (a = .85): the steps shrink like .85^m, so the smallest CQI is at the last epoch
    with pytest.raises(NotConvergedError, match=r'the smallest CQI is [0-9.e-]+ at epoch 30 of 30\.') as e:
        convergence_epoch(np.exp(-np.arange(30) / 4), mu=1e-4)
    assert e.value.epoch == 30
    with pytest.raises(NotConvergedError, match=r'smallest CQI is 0\.00769 at epoch 2 of 40'):
        convergence_epoch(np.linspace(3, 1, 40), mu=1e-4)
    with pytest.raises(ValueError, match="on_no_convergence must be 'raise' or 'last'"):
        convergence_epoch(np.linspace(3, 1, 40), mu=1e-4, on_no_convergence='first')


def test_a_nan_loss_names_its_epoch_and_batch():
    from fmce_nb.data import load_dataset, DeviceLoader
    from fmce_nb.train import train_epoch, NonFiniteLossError
    dl = DeviceLoader(load_dataset('synthetic', n=256, size=8), 64, 8, train=True, seed=0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 64, 10))
    calls = []
    def objective(m, x, y, idx):                          # batch 3 is NaN, batch 4 infinite: the first is named
        calls.append(1)
        return m(x).sum() * 0 + {3: float('nan'), 4: float('inf')}.get(len(calls), 1.0)
    with pytest.raises(NonFiniteLossError, match='at epoch 5, batch 3') as e:
        train_epoch(model, dl, torch.optim.SGD(model.parameters(), lr=0.0), 5, objective=objective)
    assert (e.value.epoch, e.value.batch) == (5, 3) and math.isnan(e.value.value)


def test_fmce_net_arguments_and_messages():
    from fmce_nb.fmce_net import FMCENet
    assert FMCENet(4, 2).in_channels == 4
    with pytest.raises(ValueError, match='in_channels must be >= 4, got 3'): FMCENet(3, 2)
    with pytest.raises(ValueError, match='K must be >= 2, got 1'): FMCENet(8, 1)
    with pytest.raises(ValueError, match=r'built for 8-channel maps, got 16 channels .*build FMCENet\(16, K\)'):
        FMCENet(8, 2)(torch.zeros(1, 16, 2, 2))
    first = FMCENet(2048, 2).body[0]
    assert (first.in_channels, first.out_channels, first.kernel_size, first.padding) == (2048, 1024, (3, 3), (1, 1))
    from fmce_nb.fmcs import plan_epoch
    with pytest.raises(ValueError, match='^no samples: the split is empty$'):
        plan_epoch(np.zeros((0, 2), dtype=int), 7)


def test_the_fmcs_splits():
    from fmce_nb.fmcs import paper_split, image_split
    from fmce_nb.fmce_net import FMCENet
    # the paper's split: 3:1 within every phase, the same count per label on both sides (round(20 * .75) = 15)
    sp = paper_split(20, 3, seed=0)
    assert sp.train.shape == (45, 2) and sp.test.shape == (15, 2)
    sides = {}
    for k in range(3):
        tr, te = sp.train[sp.train[:, 1] == k, 0], sp.test[sp.test[:, 1] == k, 0]
        assert len(tr) == 15 and len(te) == 5 and sorted([*tr, *te]) == list(range(20))
        sides[k] = set(te.tolist())
    assert len({frozenset(s) for s in sides.values()}) > 1        # phases are split apart: an image can sit on both sides
    assert (paper_split(20, 3, seed=0).test == sp.test).all() and not (paper_split(20, 3, seed=1).test == sp.test).all()
    assert len(paper_split(10, 2, train_frac=0.5).train) == 10
    assert sp.name == 'paper' and image_split(8, 3).name == 'image'         # the names label the records' test sets
    assert (image_split(8, 3, seed=4).test == image_split(8, 3, seed=4).test).all()
    # the image-level split: every image with all its K maps on one side (round(8 * .75) = 6 images train)
    im = image_split(8, 3, seed=0)
    assert im.train.shape == (18, 2) and im.test.shape == (6, 2)
    tr, te = set(im.train[:, 0].tolist()), set(im.test[:, 0].tolist())
    assert len(tr) == 6 and len(te) == 2 and not tr & te
    for side in (im.train, im.test):
        for i in set(side[:, 0].tolist()): assert sorted(side[side[:, 0] == i, 1].tolist()) == [0, 1, 2]
    assert FMCENet(64, 3).config() == {'in_channels': 64, 'K': 3}


def test_the_default_constants():
    # SPEC: alpha = 0.85 and B = 5 unless told otherwise. S2 = .85*10 + .15*4 = 9.1
    close(smooth([10., 4.]), [10., 9.1])
    # a = .5: S = 8, 6, 4, 2.5, 1.75, 1.375, 1.1875; |D2..D7| = 2, 2, 1.5, .75, .375, .1875; CQI_7 over the last 5
    close(cqi([8., 4., 2., 1., 1., 1., 1.], alpha=0.5)[6], (2 + 1.5 + .75 + .375 + .1875) / 5)


def test_the_default_settings_are_the_papers():
    from fmce_nb.cqi import NotConvergedError
    from fmce_nb.fmce_net import FMCENet
    # mu = 1e-4: a straight line down is never flat enough
    for f in (lambda L: convergence_epoch(L), lambda L: epoch_markers(L, K=2)):
        with pytest.raises(NotConvergedError) as e: f(np.linspace(3, 1, 40))
        assert e.value.mu == 1e-4
    # B = 5: EMA a = .5 on 8, 4, 2, 1, 1, 1, 1 has |D2..D7| = 2, 2, 1.5, .75, .375, .1875; CQI_6 = 6.625/5 > 1,
    # CQI_7 = 4.8125/5 <= 1 (with B = 6 it would be 6.8125/6 > 1). Drops ln(8/S): .29, .69, 1.16, 1.52, 1.76, 1.91;
    # K = 2 halves 1.91 at .95, nearest 1.16: markers 4, 7.
    L = [8., 4., 2., 1., 1., 1., 1.]
    assert convergence_epoch(L, mu=1.0, alpha=0.5)[:3] == (1, 7, True)
    assert epoch_markers(L, K=2, mu=1.0, alpha=0.5).markers == (4, 7)
    # K = 10
    Lx = np.exp(-np.arange(30) / 2)
    assert len(epoch_markers(Lx, mu=(np.exp(-4.5) + np.exp(-4)) / 2 * (1 - np.exp(-0.5)), alpha=1e-9, window=1).markers) == 10
    assert FMCENet(64).fc.out_features == 10


# --- Grad-CAM localization and its trend (08_gradcam) ---------------------------------------------------------------

def test_an_empty_cam_scores_as_a_flat_map_and_is_flagged():
    from fmce_nb.viz import localization
    # 8x8 = 64 pixels: the top 10% are ceil(6.4) = 7 pixels, so a flat map's share is 7/64; its entropy is the maximum, 1
    loc = localization(np.stack([np.zeros((4, 4)), np.ones((4, 4))]), 8)
    close(loc['top10_mass'], [7 / 64, 7 / 64])
    close(loc['entropy'], [1., 1.])
    assert loc['empty'].tolist() == [True, False]


def test_phase_trend_is_spearman_per_image():
    from fmce_nb.viz import phase_trend
    # columns over K = 4 phases: rising -> 1; falling -> -1; constant -> 0 (no trend);
    # [2, 1, 4, 3]: rank differences to 1..4 are (1, -1, 1, -1), sum d^2 = 4, rho = 1 - 6*4/(4*15) = 0.6
    v = np.array([[1., 9., 5., 2.], [2., 7., 5., 1.], [3., 4., 5., 4.], [4., 0., 5., 3.]])
    close(phase_trend(v), [1., -1., 0., 0.6])
    with pytest.raises(ValueError, match='K >= 2 phases'): phase_trend(np.ones((1, 3)))


# --- intervals (10_report) ------------------------------------------------------------------------------------------

def test_paired_difference_interval_by_hand():
    from fmce_nb.report import paired_diff_ci
    # differences 0.5, 1.5, 1.0: mean 1, sample sd 0.5, t(0.975, 2) = 4.302653 -> 1 +- 4.302653 * 0.5 / sqrt(3)
    r = paired_diff_ci([2.5, 3.5, 4.0], [2.0, 2.0, 3.0])
    h = 4.302653 * 0.5 / math.sqrt(3)
    close([r['mean'], *r['ci']], [1., 1 - h, 1 + h], rtol=0, atol=1e-5)
    assert r['n'] == 3


def test_hierarchical_interval_spans_the_seeds():
    from fmce_nb.report import hierarchical_ci
    # seed means 0.2 and 0.6 with no spread inside a seed: a draw of two seeds has mean 0.2, 0.4 or 0.6
    est, (lo, hi) = hierarchical_ci([[0.2] * 30, [0.6] * 30])
    close([est, lo, hi], [0.4, 0.2, 0.6])


# --- a validation set held out of the training split (00_data) ------------------------------------------------------

def test_held_out_images_never_overlap_the_training_subset():
    from fmce_nb.data import load_dataset
    tr = load_dataset('digits', train=True)            # 1,438 images, no two with the same pixels
    sub, val = tr.subset(200, seed=5), tr.held_out(200, 100, seed=5)
    key = lambda d: {tuple(r) for r in d.images.flatten(1).tolist()}
    assert len(val) == 100 and not key(sub) & key(val)
    assert key(tr.subset(300, seed=5)) == key(sub) | key(val)


def test_hold_out_images_holds_out_whole_images_with_all_their_phases():
    from fmce_nb.fmcs import hold_out_images
    # 10 images x 3 phases, rows in image-major order; frac 0.2 of 10 images: 2 images, all 3 of their pairs
    pairs = np.array([(n, k) for n in range(10) for k in range(3)])
    tr, val = hold_out_images(pairs, frac=0.2, seed=3)
    assert val.shape == (6, 2) and tr.shape == (24, 2)
    held = set(val[:, 0].tolist())
    assert len(held) == 2 and not held & set(tr[:, 0].tolist())                 # no image on both sides
    for n in held: assert sorted(val[val[:, 0] == n, 1].tolist()) == [0, 1, 2]  # every phase of a held-out image
    assert sorted(map(tuple, np.concatenate([tr, val]).tolist())) == sorted(map(tuple, pairs.tolist()))
    # numpy's seeded permutation of the 10 images picks which two: the first two of default_rng(3).permutation
    assert held == set(np.random.default_rng(3).permutation(10)[:2].tolist())
    # a share rounds to whole images, at least one and never all: 0.01 of 10 -> 1, 0.99 of 10 -> 9
    assert len(set(hold_out_images(pairs, 0.01)[1][:, 0].tolist())) == 1
    assert len(set(hold_out_images(pairs, 0.99)[1][:, 0].tolist())) == 9
    # a pair list of phases that are not all present keeps its rows as they are
    some = pairs[pairs[:, 1] != 1]
    tr2, val2 = hold_out_images(some, 0.5, seed=0)
    assert len(tr2) == len(val2) == 10 and not set(tr2[:, 0].tolist()) & set(val2[:, 0].tolist())
    with pytest.raises(ValueError, match='at least 2 distinct images'): hold_out_images(pairs[:3], 0.5)


def test_too_short_a_curve_for_K_says_that_K_is_why():
    with pytest.raises(ValueError, match=r'^need at least 5 epochs of losses, got 3: K=4 markers need K \+ 1 epochs'):
        epoch_markers([3., 2., 1.], K=4)


@pytest.mark.parametrize('n', [-5, 0, 2.5, True, 1439, 10**6])
def test_a_subset_of_no_images_a_fraction_or_more_than_the_split_is_refused(n):
    from fmce_nb.data import load_dataset
    with pytest.raises(ValueError, match=r"^digits: a subset needs a whole number of images from 1 to the split's 1438 "):
        load_dataset('digits').subset(n)


# --- FMCS-Datasets of other modules and of several runs; FMCE-Nets trained once ---------------------------------------

def test_the_maps_of_a_named_module_are_what_a_forward_hook_on_it_sees(tiny_run):
    from fmce_nb.fmcs import FMCSData
    fm = FMCSData(tiny_run, (1, 3, 4), 'cpu', amp=False, module='net.features.0')
    assert fm.feature_shape == (32, 8, 8)                       # 16 px, the first block: 32 channels, one 2x2 pool
    net, seen = tiny_run.model(3).eval(), []
    h = net.net.features[0].register_forward_hook(lambda m, i, o: seen.append(o))
    x = fm.loader.transform(torch.tensor([7, 2]))
    with torch.no_grad(): net(x)
    h.remove()
    assert_close(fm.maps([7, 2], [1, 1]), seen[0], rtol=1e-5, atol=1e-5)       # phase index 1 is marker epoch 3


def test_a_pool_of_runs_numbers_its_images_run_after_run(tiny_run):
    from fmce_nb.fmcs import FMCSData, PooledFMCS
    a, b = FMCSData(tiny_run, (1, 3, 4), 'cpu', cache=True), FMCSData(tiny_run, (1, 2, 4), 'cpu', n_images=40, seed=3, cache=True)
    pool = PooledFMCS([a, b])
    assert pool.N == 96 + 40 and pool.images_of(1).tolist() == list(range(96, 136))
    # pool image 96 + 5 is image 5 of b; pool image 95 is the last of a; the batch keeps its order
    got = pool.maps([0, 95, 101], [0, 2, 1])
    assert_close(got, torch.stack([a._cache[0, 0], a._cache[2, 95], b._cache[1, 5]]))


def test_control_features_by_hand():
    from fmce_nb.fmce_net import control_features
    class Two:                        # two maps of 1 channel, 1 x 2: [3, 5] in phase 0 and [0, 4] in phase 2
        def batches(self, pairs, batch_size, shuffle=False):
            yield torch.tensor([[[[3., 5.]]], [[[0., 4.]]]]), torch.tensor([0, 2])
    f, y = control_features(Two(), np.array([[0, 0], [1, 2]]))
    # mean, population std: (4, 1) and (2, 2); norms sqrt(9 + 25) and 4
    close(f['mean_std'], [[4., 1.], [2., 2.]]); close(f['flat'], [[3., 5.], [0., 4.]])
    close(f['norm'], [[math.sqrt(34)], [4.]], rtol=1e-6, atol=0); close(y, [0, 2])


def test_holm_by_hand_and_what_an_interval_says():
    from fmce_nb.report import holm, interval_reading
    # sorted 0.01, 0.03, 0.04 -> 3 x .01 = .03; 2 x .03 = .06; 1 x .04 = .04, raised to the running max .06
    close(holm([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])
    # NaN is no test: m = 2, so .02 -> .04 and .5 -> .5
    close(holm([0.02, math.nan, 0.5]), [0.04, math.nan, 0.5], equal_nan=True)
    assert interval_reading({'mean': 0.0, 'ci': (-0.012, 0.031), 'n': 3}) == 'no detectable difference; differences above 3.10 pp excluded'
    assert interval_reading({'mean': -0.05, 'ci': (-0.08, -0.02), 'n': 3}, 0.03, 'A', 'B') == 'B better (Holm p 0.030)'


def test_a_module_matures_where_its_cka_to_the_end_stays_above_the_threshold():
    from fmce_nb.experiments.fmcs_module_map import mature_phase
    # 0.95 at phase 2 does not count: phase 3 falls back to 0.5; from phase 4 on every value is >= 0.9
    assert mature_phase([0.2, 0.95, 0.5, 0.91, 0.99], 0.9) == 4
    assert mature_phase([0.95, 0.97], 0.9) == 1 and mature_phase([0.95, 0.5], 0.9) is None


def test_an_fmce_net_is_trained_once_per_run_pairs_and_settings(tiny_run):
    from fmce_nb.fmcs import FMCSData, all_pairs
    from fmce_nb.fmce_net import best_fmce_net
    fm = FMCSData(tiny_run, (1, 3, 4), 'cpu', cache=True)
    pairs, kw = all_pairs(fm.N, 3), dict(max_epochs=1, patience=1)
    before = set((tiny_run.dir/'fmce_net').glob('best-*'))
    n1, h1 = best_fmce_net(fm, pairs, 0, **kw)
    (new,) = set((tiny_run.dir/'fmce_net').glob('best-*')) - before
    stamp = (new/'fmce_net.safetensors').stat().st_mtime_ns
    n2, h2 = best_fmce_net(fm, pairs, 0, **kw)                       # read back: nothing written
    assert (new/'fmce_net.safetensors').stat().st_mtime_ns == stamp and h2 == h1
    x = torch.randn(3, *fm.feature_shape)
    assert_close(n2(x), n1(x))
    best_fmce_net(fm, pairs[:150], 0, **kw)                          # other pairs: another net
    assert len(set((tiny_run.dir/'fmce_net').glob('best-*')) - before) == 2


def test_the_shuffled_label_net_is_kept_under_its_own_key_with_its_pairs(tiny_run):
    # the control net of FMCE-Net++ goes through best_fmce_net's own key: a changed split (other pairs) trains and keeps
    # another net instead of reading a stale one, and it never shares a folder with the oracle of the same pairs
    from fmce_nb.fmcs import FMCSData, all_pairs
    from fmce_nb.fmce_net import best_fmce_net, ShuffledPhases
    fm = FMCSData(tiny_run, (1, 3, 4), 'cpu', cache=True)
    pairs, kw = all_pairs(fm.N, 3), dict(max_epochs=1, patience=1)
    shuffled = lambda: set((tiny_run.dir/'fmce_net').glob('shuffled-*'))
    before, best_before = shuffled(), set((tiny_run.dir/'fmce_net').glob('best-*'))
    n1, _ = best_fmce_net(ShuffledPhases(fm, 0), pairs, 0, **kw)
    assert len(shuffled() - before) == 1 and set((tiny_run.dir/'fmce_net').glob('best-*')) == best_before
    best_fmce_net(ShuffledPhases(fm, 0), pairs, 0, **kw)                      # read back
    assert len(shuffled() - before) == 1
    best_fmce_net(ShuffledPhases(fm, 0), pairs[:150], 0, **kw)                # another split: another net
    best_fmce_net(ShuffledPhases(fm, 1), pairs, 0, **kw)                      # other shuffled labels: another net
    assert len(shuffled() - before) == 3
