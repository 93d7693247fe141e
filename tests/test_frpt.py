"""FR-PT's rules pinned by hand-worked values: the reverse operators, the refusals, and the post-training loss."""
import math

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from fmce_nb.frpt import (FRPTObjective, act_reverse, block_reverse, conv_reverse_fft, nearest_embedding, pool_reverse,
                         reconstruct_targets)
from fmce_nb.models import build_model


def test_average_pool_reverse_honours_divisor_override():
    # one 2x2 window [1, 2, 3, 4], divisor 3, target 5: its sum must become 15, so each element gains (15 - 10) / 4
    pool = nn.AvgPool2d(2, divisor_override=3)
    x = pool_reverse(pool, torch.tensor([1., 2., 3., 4.]).reshape(1, 1, 2, 2), torch.tensor([[[[5.]]]]))
    assert_close(x.flatten(), torch.tensor([2.25, 3.25, 4.25, 5.25]))
    assert_close(pool(x), torch.tensor([[[[5.]]]]))


def test_hardswish_reverse_of_zero_is_the_nearest_preimage():
    # hardswish is 0 on (-inf, -3] and at 0: from -5 nothing moves; from -2, -3 (1 away) beats 0 (2 away); from -1, 0
    assert_close(act_reverse(nn.Hardswish(), torch.tensor([-5., -2., -1., 1.]), torch.zeros(4)),
                 torch.tensor([-5., -3., 0., 0.]))
    # -0.2 has the roots -1.5 -+ sqrt(2.25 - 1.2) (z (z + 3) / 6 = -0.2): -2.52470 and -0.47530
    r = math.sqrt(2.25 - 1.2)
    assert_close(act_reverse(nn.Hardswish(), torch.tensor([-5., -1.]), torch.full((2,), -0.2)),
                 torch.tensor([-1.5 - r, -1.5 + r]), atol=1e-5, rtol=0)


def test_the_fft_reverse_refuses_padding_and_the_walk_refuses_it_first():
    conv = nn.Conv2d(2, 3, 3, padding=1)
    with pytest.raises(NotImplementedError, match=r"padding 0 only; use conv_method='cg'"):
        conv_reverse_fft(conv, torch.randn(1, 2, 8, 8), torch.randn(1, 3, 8, 8))
    model = build_model('small_cnn').eval()                                       # 3x3 convolutions with padding 1
    with pytest.raises(NotImplementedError, match=r'no reverse for net\.features\.2\.0: .*padding 0 only'):
        reconstruct_targets(model, torch.randn(2, 3, 16, 16), torch.tensor([0, 1]), 'net.features.1', conv_method='fft')


def test_the_vjp_block_reverse_runs_under_no_grad():
    # reconstruct_targets runs under no_grad; the VJP solve (large maps) must still take gradients
    from torchvision.models.resnet import BasicBlock
    torch.manual_seed(0)
    blk = BasicBlock(4, 4).eval()
    z0 = torch.randn(2, 4, 4, 4)
    with torch.no_grad():
        t = blk(z0 + 0.5)
        z = block_reverse(blk, z0, t, method='vjp', iters=3)
        assert (blk(z) - t).norm() < (blk(z0) - t).norm()


class _Store:
    "Two stored targets (2 logits each) at the output layer."
    meta = {'identity': {'layer': 'out', 'run': 'r', 'weights': 'w', 'output_target': 'nearest', 'conv_method': 'cg'}}
    images = None
    def __init__(self): self.t = torch.tensor([[1., 0.], [0., 0.]])
    def __len__(self): return 2
    def __getitem__(self, idx): return self.t[idx]


def test_the_post_training_loss_weights_mse_by_the_ema_ratio_of_ce_to_mse():
    obj = FRPTObjective(_Store(), layer='out', alpha=0.1)
    identity = lambda x: x                                       # the "model" returns its input as logits
    # batch 1: logits [0, 0], label 0: CE = log 2; target [1, 0]: MSE = (1 + 0) / 2 = 0.5.
    # EMAs start at the values: w = 0.1 * log 2 / 0.5, loss = log 2 + w * 0.5 = 1.1 log 2
    l1 = obj(identity, torch.tensor([[0., 0.]]), torch.tensor([0]), torch.tensor([0]))
    assert_close(l1, torch.tensor(1.1 * math.log(2)))
    # batch 2: logits [2, 0], label 0: CE = log(1 + e^-2) = 0.126928; target [0, 0]: MSE = 4 / 2 = 2.
    # EMA (beta 0.9): CE 0.9 log 2 + 0.1 * 0.126928, MSE 0.9 * 0.5 + 0.1 * 2 = 0.65; w = 0.1 * CE_ema / 0.65
    ce2 = math.log(1 + math.exp(-2))
    w2 = 0.1 * (0.9 * math.log(2) + 0.1 * ce2) / 0.65
    l2 = obj(identity, torch.tensor([[2., 0.]]), torch.tensor([0]), torch.tensor([1]))
    assert_close(l2, torch.tensor(ce2 + w2 * 2), rtol=1e-6, atol=1e-7)


def test_alpha_zero_is_plain_cross_entropy():
    obj = FRPTObjective(_Store(), layer='out', alpha=0.0)
    assert_close(obj(lambda x: x, torch.tensor([[0., 0.]]), torch.tensor([1]), torch.tensor([0])), torch.tensor(math.log(2)))
    with pytest.raises(ValueError, match='alpha must be >= 0'):
        FRPTObjective(_Store(), layer='out', alpha=-0.1)


def test_simple_cnn_targets_at_its_pre_activations_and_the_exact_last_step():
    from fmce_nb.frpt import layer_names, nearest_embedding
    torch.manual_seed(0)
    m = build_model('simple_cnn').eval()
    assert {'net.conv1', 'net.conv2', 'net.conv3', 'net.fc1'} <= set(layer_names(m))
    x, y = torch.randn(3, 3, 32, 32), torch.tensor([0, 4, 9])
    # at 32 px: conv1 28x28, pool 14, conv2 12x12, pool 6, conv3 4x4, fc1 128
    shapes = {l: tuple(reconstruct_targets(m, x, y, l).shape[1:]) for l in ('net.conv1', 'net.conv2', 'net.conv3', 'net.fc1')}
    assert shapes == {'net.conv1': (10, 28, 28), 'net.conv2': (10, 12, 12), 'net.conv3': (10, 4, 4), 'net.fc1': (128,)}
    with torch.no_grad():                 # below fc2 alone (128 unknowns, 10 equations) the reverse reaches the target
        assert_close(m.net.fc2(reconstruct_targets(m, x, y, 'net.act4')), nearest_embedding(m(x), y), atol=1e-4, rtol=1e-4)


def test_the_small_stem_resnet18_is_walked_to_its_4x4_layer4():
    m = build_model('resnet18_smallstem').eval()
    assert reconstruct_targets(m, torch.randn(2, 3, 32, 32), torch.tensor([3, 5]), 'net.layer4').shape == (2, 512, 4, 4)


# --- the output targets, worked by hand -------------------------------------------------------------------------------

def test_nearest_embedding_merges_the_label_with_the_competitors_above_it():
    from fmce_nb.frpt import nearest_embedding
    # [1, 3, 2], label 0: the nearest point with z0 >= z1, z2 merges z0 and z1 at their mean 2; z2 = 2 already complies.
    # [1, 4, 3], label 0: mean of 1 and 4 is 2.5 < 3, so 3 joins too: (1 + 4 + 3) / 3 = 8/3 for all three
    got = nearest_embedding(torch.tensor([[1., 3., 2.], [1., 4., 3.], [3., 1., 2.]]), torch.tensor([0, 0, 0]))
    assert_close(got, torch.tensor([[2., 2., 2.], [8 / 3, 8 / 3, 8 / 3], [3., 1., 2.]]))      # a correct row is unchanged


def test_max_assign_and_one_hot():
    from fmce_nb.frpt import max_assign, one_hot
    assert_close(max_assign(torch.tensor([[1., 3., 2.]]), torch.tensor([0])), torch.tensor([[3., 3., 2.]]))
    assert_close(max_assign(torch.tensor([[1., 3., 2.]]), torch.tensor([2]), scale=2.0), torch.tensor([[1., 3., 6.]]))
    assert_close(one_hot(torch.tensor([2, 0]), 3), torch.tensor([[0., 0., 1.], [1., 0., 0.]]))


# --- the layer reverses, worked by hand ------------------------------------------------------------------------------

def test_linear_reverse_is_the_minimum_change_solve_or_least_squares():
    from fmce_nb.frpt import linear_reverse
    # W = [1, 1], b = 1, x0 = [1, 0], y = 4: r = 4 - 1 - 1 = 2, x = x0 + W^T (W W^T)^-1 r = [1, 0] + [1, 1] = [2, 1]
    x, info = linear_reverse(torch.tensor([[1., 0.]]), torch.tensor([[4.]]), torch.tensor([[1., 1.]]), torch.tensor([1.]),
                             return_info=True)
    assert_close(x, torch.tensor([[2., 1.]])); assert info['method'] == 'solve' and not info['fallback'].any()
    # W = [[1], [1]] (two equations, one unknown), y = [1, 3]: least squares gives their mean, 2, whatever x0 is
    x, info = linear_reverse(torch.tensor([[7.]]), torch.tensor([[1., 3.]]), torch.tensor([[1.], [1.]]), return_info=True)
    assert_close(x, torch.tensor([[2.]])); assert info['method'] == 'lstsq'
    with pytest.raises(ValueError, match='shapes do not match'):
        linear_reverse(torch.zeros(1, 3), torch.zeros(1, 1), torch.zeros(1, 2))


def test_the_linear_fallback_is_tikhonov_centred_on_x0():
    from fmce_nb.frpt import linear_reverse, BOUND
    # W = [1e-6, 0] asks x_1 = 1e9 / ... to reach y = 1: far past the bound, so the sample falls back to the anchored
    # Tikhonov step, which stays within the bound and moves only along W's row
    x, info = linear_reverse(torch.zeros(1, 2, dtype=torch.float64), torch.ones(1, 1, dtype=torch.float64),
                             torch.tensor([[1e-6, 0.]], dtype=torch.float64), return_info=True)
    assert info['fallback'].all() and x.abs().max() <= BOUND and x[0, 1] == 0 and x[0, 0] > 0


def test_relu_reverse_keeps_what_already_maps_to_zero():
    # a = [0, 0, 5] from z0 = [-1, 2, -3]: -1 already gives 0; 2 must fall to 0; 5 is reached at 5
    assert_close(act_reverse(nn.ReLU(), torch.tensor([-1., 2., -3.]), torch.tensor([0., 0., 5.])), torch.tensor([-1., 0., 5.]))
    # ReLU6: a = 6 from z0 = 8 stays at 8 (already 6), from z0 = 1 moves to 6
    assert_close(act_reverse(nn.ReLU6(), torch.tensor([8., 1.]), torch.tensor([6., 6.])), torch.tensor([8., 6.]))


def test_max_and_average_pool_reverses_by_hand():
    x0 = torch.tensor([1., 2., 3., 4.]).reshape(1, 1, 2, 2)
    # max 5: only the window's maximum rises to it; max 2: the 3 and 4 fall to 2, and the max is then 2
    assert_close(pool_reverse(nn.MaxPool2d(2), x0, torch.tensor([[[[5.]]]])).flatten(), torch.tensor([1., 2., 3., 5.]))
    assert_close(pool_reverse(nn.MaxPool2d(2), x0, torch.tensor([[[[2.]]]])).flatten(), torch.tensor([1., 2., 2., 2.]))
    # mean 3.5 from a mean of 2.5: each element gains 1
    assert_close(pool_reverse(nn.AvgPool2d(2), x0, torch.tensor([[[[3.5]]]])).flatten(), torch.tensor([2., 3., 4., 5.]))
    with pytest.raises(NotImplementedError, match='non-overlapping'):
        pool_reverse(nn.MaxPool2d(3, stride=1), torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 2, 2))


def test_gap_and_batchnorm_reverses_by_hand():
    from fmce_nb.frpt import gap_reverse, bn_reverse
    # the nearest map with the asked mean: [[1, 3], [5, 7]] (mean 4) asked for 6 gains 2 at every position;
    # the authors' broadcast puts 6 everywhere instead
    m = torch.tensor([[[[1., 3.], [5., 7.]]]])
    assert_close(gap_reverse(m, torch.tensor([[6.]])), torch.tensor([[[[3., 5.], [7., 9.]]]]))
    assert_close(gap_reverse(m, torch.tensor([[6.]]), broadcast=True), torch.full((1, 1, 2, 2), 6.))
    with pytest.raises(ValueError, match='does not fit the map'): gap_reverse(m, torch.tensor([[6., 1.]]))
    bn = nn.BatchNorm2d(2, eps=1.0).eval()
    with torch.no_grad():
        bn.running_mean.fill_(1.); bn.running_var.fill_(3.); bn.weight.copy_(torch.tensor([2., 0.])); bn.bias.fill_(1.)
    # channel 0: x = (y - beta) sqrt(var + eps) / gamma + mean = (5 - 1) * 2 / 2 + 1 = 5; channel 1 (gamma 0): 0
    assert_close(bn_reverse(bn, torch.full((1, 2, 1, 1), 5.)), torch.tensor([5., 0.]).reshape(1, 2, 1, 1))


def test_the_cg_convolution_reverse_matches_the_dense_minimum_change_solve():
    from fmce_nb.frpt import conv_reverse_cg, conv_matrix
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 2, 3, padding=1, bias=False).double()        # 2 x 36 equations, 3 x 36 unknowns
    x0, y = torch.randn(1, 3, 6, 6, dtype=torch.float64), torch.randn(1, 2, 6, 6, dtype=torch.float64)
    A = conv_matrix(conv, (3, 6, 6))                                     # (72, 108): column j is conv of the j-th unit map
    r = y.flatten() - A @ x0.flatten()
    want = x0.flatten() + A.T @ torch.linalg.solve(A @ A.T, r)           # the projection of x0 onto {x : conv(x) = y}
    assert_close(conv_reverse_cg(conv, x0, y).flatten(), want, rtol=1e-6, atol=1e-6)


# --- post-training: freezing and the target store's identity ----------------------------------------------------------

@pytest.fixture(scope='module')
def simple_run(tmp_path_factory):
    from fmce_nb.runs import TrainConfig
    from fmce_nb.train import train
    cfg = TrainConfig(dataset='mnist5k', arch='simple_cnn', epochs=2, size=32, batch_size=64, n_train=64, n_test=64)
    return train(cfg, tmp_path_factory.mktemp('frpt')/'run')


def test_post_training_freezes_every_step_after_the_layer(simple_run, tmp_path):
    from fmce_nb.frpt import TargetStore
    from fmce_nb.data import DeviceLoader
    store = TargetStore.build(simple_run, 'net.conv2', tmp_path/'store')
    from fmce_nb.train import FineTune
    obj = FineTune(FRPTObjective(store, 'net.conv2', alpha=0.1), simple_run, store.meta['identity']['epoch'])
    model = build_model('simple_cnn')
    loader = DeviceLoader(simple_run.config.split(), 64, 32)
    obj.prepare(model, loader)                             # FineTune loads the pretrained weights, FR-PT freezes
    trainable = {n.split('.')[1] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {'conv1', 'conv2'}                 # conv3, fc1 and fc2 come after net.conv2: frozen
    for k, v in simple_run.model(2).state_dict().items(): assert_close(model.state_dict()[k], v, rtol=0, atol=0)
    with pytest.raises(ValueError, match="holds targets of 'net.conv2', not 'net.conv3'"):
        FRPTObjective(store, 'net.conv3', alpha=0.1)


def test_a_target_store_opens_only_for_its_own_model_layer_and_data(simple_run, tmp_path):
    from fmce_nb.frpt import TargetStore
    store = TargetStore.build(simple_run, 'out', tmp_path/'s')
    assert len(store) == 64 and tuple(store[torch.tensor([0, 5])].shape) == (2, 10)
    assert store.meta['identity']['epoch'] == 2 and store.meta['identity']['layer'] == 'out'
    for kw, field in ((dict(epoch=1), 'epoch'), (dict(output_target='one_hot'), 'output_target')):
        with pytest.raises(ValueError, match=f"another model or dataset.*'{field}'"):
            TargetStore.build(simple_run, 'out', tmp_path/'s', **kw)
    with pytest.raises(FileNotFoundError, match='no finished target store'):
        TargetStore(tmp_path/'nothing')


# --- a target that is already reached keeps its input ------------------------------------------------------------------

def test_a_reached_target_returns_the_input_bit_for_bit_in_float32():
    # rounding in W x0 used to leave a residual of ~1e-7 that the solve and the ReLU reverse blew up, and a zero
    # residual made conjugate gradient divide 0 by 0 (1e-300 is 0 in float32)
    from fmce_nb.frpt import linear_reverse, conv_reverse_cg
    torch.manual_seed(0)
    W, b, x0 = torch.randn(3, 7), torch.randn(3), torch.randn(4, 7)
    assert torch.equal(linear_reverse(x0, x0 @ W.T + b, W, b), x0)
    conv = nn.Conv2d(2, 1, 3)
    z0 = torch.randn(2, 2, 6, 6)
    with torch.no_grad(): y = conv(z0)
    y2 = y.clone(); y2[1] += 1.0                                   # the second sample asks for a change
    x = conv_reverse_cg(conv, z0, y2)
    assert torch.isfinite(x).all() and torch.equal(x[0], z0[0]) and not torch.equal(x[1], z0[1])
    assert_close(conv(x[1:]).detach(), y2[1:], rtol=1e-4, atol=1e-4)


def test_correct_images_get_their_own_features_back_through_the_whole_simple_cnn():
    # the nearest embedding leaves correct logits as they are, so every reverse step must too
    torch.manual_seed(0)
    model = build_model('simple_cnn').eval()
    x = torch.randn(8, 3, 32, 32)
    with torch.no_grad(): y = model(x).argmax(1)                    # every image "correct"
    t = reconstruct_targets(model, x, y, 'net.conv1')
    assert torch.equal(t, reconstruct_targets(model, x, y, 'net.conv1', output_target=None))


def test_the_anchored_block_reverse_stays_nearer_than_the_exact_preimage_and_skips_reached_samples():
    from torchvision.models.resnet import BasicBlock
    torch.manual_seed(0)
    blk = BasicBlock(4, 4).double().eval()
    z0, z1 = torch.randn(2, 4, 4, 4, dtype=torch.float64), torch.randn(2, 4, 4, 4, dtype=torch.float64)
    with torch.no_grad():
        t = torch.cat([blk(z1[:1]), blk(z0[1:])])                  # sample 1 asks for its own output
        start = (blk(z0[:1]) - t[:1]).norm()
        for method in ('anchored', 'vjp', 'gauss_newton'):
            z = block_reverse(blk, z0, t, method=method)
            assert torch.equal(z[1], z0[1]), method                # reached: untouched (Adam would drift it)
            assert (blk(z[:1]) - t[:1]).norm() < start, method
        za, zg = block_reverse(blk, z0, t, method='anchored'), block_reverse(blk, z0, t, method='gauss_newton')
        assert (za[0] - z0[0]).norm() < (zg[0] - z0[0]).norm()     # the Tikhonov term keeps it nearer z0
    with pytest.raises(ValueError, match="method must be 'auto', 'gauss_newton', 'anchored' or 'vjp'"):
        block_reverse(blk, z0, t, method='adam')


def test_the_reverse_plan_names_each_operator():
    from fmce_nb.frpt import reverse_plan
    assert reverse_plan(build_model('simple_cnn'), 'net.conv2', 'fft') == [
        'net.fc2 (linear solve)', 'net.act4 (ReLU)', 'net.fc1 (linear solve)', 'net.act3 (ReLU)', 'net.conv3 (conv, fft)',
        'net.pool2 (MaxPool2d)', 'net.act2 (ReLU)']
    assert reverse_plan(build_model('simple_cnn'), 'out') == []


def test_a_stored_draw_is_what_post_training_reads(simple_run, tmp_path):
    import torch.nn.functional as F
    from fmce_nb.frpt import TargetStore, target_shift
    from fmce_nb.data import DeviceLoader
    store = TargetStore.build(simple_run, 'out', tmp_path/'d', augment_seed=5)
    ctrl = TargetStore.build(simple_run, 'out', tmp_path/'c', augment_seed=5, output_target='forward')
    data = simple_run.config.split()
    clean, _ = next(iter(DeviceLoader(data, 64, 32, train=False, stats=simple_run.stats).batches(0)))
    drawn, y = next(iter(DeviceLoader(data, 64, 32, train=False, augment=True, seed=5, stats=simple_run.stats).batches(0)))
    idx = torch.arange(64)
    assert_close(store.image(idx), drawn) and not torch.equal(drawn, clean)
    assert store.meta['identity']['augment_seed'] == 5
    model = simple_run.model().eval()
    with torch.no_grad():
        logits = model(drawn)
        assert_close(ctrl[idx], logits)                             # the control: the model's own logits of the draw
        obj = FRPTObjective(store, 'out', alpha=0.0)
        assert_close(obj(model, clean, y, idx), F.cross_entropy(logits, y))     # the loss sees the draw, not `clean`
    wrong = float((logits.argmax(1) != y).float().mean())
    shift = target_shift(store, simple_run, 'out')
    assert shift['moved'] >= wrong and target_shift(ctrl, simple_run, 'out')['moved'] == 0.0
    with pytest.raises(ValueError, match='another model or dataset.*augment_seed'):
        TargetStore.build(simple_run, 'out', tmp_path/'d', augment_seed=6)


def test_the_walk_reverses_global_pooling_by_the_projection_not_the_broadcast():
    # small_cnn at 32 px: net.features gives 128 x 4 x 4 maps, then global pooling and fc. The projection moves every
    # position of a channel by the same amount (the change of its mean), so target - feature is constant over space
    # and the target keeps the feature's spatial pattern; the authors' broadcast would make the target flat instead.
    from fmce_nb.frpt import nearest_embedding
    torch.manual_seed(0)
    model = build_model('small_cnn').eval()
    x, y = torch.randn(6, 3, 32, 32), torch.arange(6) % 10
    with torch.no_grad(): feat = model.net.features(x)
    t = reconstruct_targets(model, x, y, 'net.features')
    shift = t - feat
    assert t.shape == feat.shape == (6, 128, 4, 4)
    assert_close(shift, shift[:, :, :1, :1].expand_as(shift), rtol=0, atol=1e-5)            # one shift per channel
    assert_close(t - t.mean((2, 3), keepdim=True), feat - feat.mean((2, 3), keepdim=True), rtol=0, atol=1e-5)
    assert (feat.std((2, 3)) > 1e-3).any()                                                 # so a flat target would differ
    # and the pooled target gives the logits the labels ask for (fc has 128 inputs for 10 outputs: reachable)
    with torch.no_grad(): want = nearest_embedding(model(x), y)
    assert_close(model.net.fc(t.mean((2, 3))).detach(), want, rtol=1e-4, atol=1e-4)


def _anchored_by_hand(A, z0, t, steps=3, pull=True):
    ("The anchored Gauss-Newton of 09_frpt for a linear map z -> A z, one sample, in float64 numpy: each step solves "
     "(A^T A + lam I) d = A^T r - lam (z - z0) directly (no CG), lam = |A g|^2 / |g|^2 with g = A^T r, then halves "
     "the step (at most 8 tries) until the residual falls.")
    import numpy as np
    z = z0.copy()
    for _ in range(steps):
        r = t - A @ z
        g = A.T @ r
        lam = (A @ g) @ (A @ g) / (g @ g)
        d = np.linalg.solve(A.T @ A + lam * np.eye(len(z)), g - lam * (z - z0) if pull else g)
        step = 1.0
        for _ in range(8):
            cand = z + step * d
            better = np.linalg.norm(t - A @ cand) < np.linalg.norm(r)
            if better: break
            step /= 2
        if better: z = cand
    return z


def test_the_anchored_gauss_newton_pulls_toward_the_start_point():
    # a linear "block" from 12 inputs to 6 outputs per sample: the anchored solve's three steps worked out by a direct
    # solve in numpy (the library runs conjugate gradient on J^T J + lam, J never formed: exact here in 12 dims).
    # Damping toward the current iterate instead of z0 gives another answer, further from z0.
    import numpy as np
    g = torch.Generator().manual_seed(0)
    A = torch.randn(6, 12, generator=g, dtype=torch.float64)
    class Linear(nn.Module):
        def forward(self, z): return (z.flatten(1) @ A.T).reshape(len(z), 2, 1, 3)
    z0 = torch.randn(3, 3, 2, 2, generator=g, dtype=torch.float64)
    t = torch.randn(3, 2, 1, 3, generator=g, dtype=torch.float64) * 3
    z = block_reverse(Linear(), z0, t, method='anchored')
    want = np.stack([_anchored_by_hand(A.numpy(), z0[i].flatten().numpy(), t[i].flatten().numpy()) for i in range(3)])
    assert_close(z.flatten(1), torch.from_numpy(want), rtol=1e-7, atol=1e-9)
    # the pull matters here: damped toward the current iterate, the same three steps end elsewhere, further from z0
    free = np.stack([_anchored_by_hand(A.numpy(), z0[i].flatten().numpy(), t[i].flatten().numpy(), pull=False)
                     for i in range(3)])
    z0n = z0.flatten(1).numpy()
    assert (np.linalg.norm(want - z0n, axis=1) < np.linalg.norm(free - z0n, axis=1) - 1e-3).all()


def test_nearest_embedding_keeps_float64_logits_exact():
    right = torch.tensor([[0.1, 0.3, 0.2]], dtype=torch.float64)              # label 1 is already the largest
    out = nearest_embedding(right, torch.tensor([1]))
    assert out.dtype == torch.float64 and torch.equal(out, right)
    wrong = nearest_embedding(right, torch.tensor([0]))                         # by hand: 0.1 and 0.3 meet at 0.2
    assert_close(wrong, torch.tensor([[0.2, 0.2, 0.2]], dtype=torch.float64), rtol=0, atol=1e-15)


def test_a_block_target_is_never_farther_from_the_next_target_than_the_forward_feature():
    # a positive target over a pre-activation far below zero: the solve on the pre-activation alone moved layer4.1's
    # output 0.060 (relative) from the layer4 target, where the forward feature is at 0.00021
    from fmce_nb.models import FeatureTap
    torch.manual_seed(11)
    net = build_model('resnet18_smallstem', 10).eval()
    x, y = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1234))[2:3], torch.tensor([4])
    t4, t40 = reconstruct_targets(net, x, y, 'net.layer4'), reconstruct_targets(net, x, y, 'net.layer4.0')
    with FeatureTap(net, 'net.layer4.0') as tap, torch.no_grad(): net(x)
    rel = lambda a: float((a - t4).norm() / t4.norm())
    with torch.no_grad(): via_target, via_feature = rel(net.net.layer4[1](t40)), rel(net.net.layer4[1](tap.output))
    assert via_feature < 1e-3 and via_target <= via_feature * (1 + 1e-6), (via_target, via_feature)
