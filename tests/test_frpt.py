"""FR-PT's rules pinned by hand-worked values: the reverse operators, the refusals, and the post-training loss."""
import math

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from fmce_nb.frpt import FRPTObjective, act_reverse, block_reverse, conv_reverse_fft, pool_reverse, reconstruct_targets
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
    def __init__(self): self.t = torch.tensor([[1., 0.], [0., 0.]])
    def __len__(self): return 2
    def __getitem__(self, idx): return self.t[idx]


def test_the_post_training_loss_weights_mse_by_the_ema_ratio_of_ce_to_mse():
    obj = FRPTObjective(_Store(), pretrained=None, layer='out', alpha=0.1)
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
    obj = FRPTObjective(_Store(), pretrained=None, layer='out', alpha=0.0)
    assert_close(obj(lambda x: x, torch.tensor([[0., 0.]]), torch.tensor([1]), torch.tensor([0])), torch.tensor(math.log(2)))
    with pytest.raises(ValueError, match='alpha must be >= 0'):
        FRPTObjective(_Store(), pretrained=None, layer='out', alpha=-0.1)


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
