"""FMCE-Net++'s Representation Auxiliary Loss: its formula by hand, its gradients at the ends of RAF, a frozen
FMCE-Net, and the refusals."""
import math

import pytest
import torch
from torch.testing import assert_close

from fmce_nb.fmce_net import FMCENet
from fmce_nb.models import build_model
from fmce_nb.ral import RAL, ral_loss
from fmce_nb.train import CrossEntropy, train
from fmce_nb.runs import TrainConfig


def test_ral_loss_by_hand():
    # CE of logits (0, 0) for label 0 is ln 2; CE of FMCS logits (0, 0, 0) towards the last class (FMCS K) is ln 3
    t, y, q = torch.zeros(1, 2), torch.tensor([0]), torch.zeros(1, 3)
    assert_close(ral_loss(t, y, q, 0.25), torch.tensor(0.25 * math.log(2) + 0.75 * math.log(3)))
    # the target is the last class: logits (1, 0, 0) give -log(1 / (e + 2)), logits (0, 0, 1) give -log(e / (e + 2))
    assert_close(ral_loss(t, y, torch.tensor([[1., 0., 0.]]), 0.), torch.tensor(math.log(math.e + 2)))
    assert_close(ral_loss(t, y, torch.tensor([[0., 0., 1.]]), 0.), torch.tensor(math.log(math.e + 2) - 1))
    for bad in (-0.01, 1.01, float('nan')):
        with pytest.raises(ValueError, match=r'RAF must lie in \[0, 1\]'): ral_loss(t, y, q, bad)


@pytest.fixture
def setup():
    torch.manual_seed(0)
    return build_model('small_cnn', 10), FMCENet(128, 4), torch.randn(8, 3, 16, 16), torch.randint(0, 10, (8,))


def grads(model, objective, x, y):
    model.zero_grad(set_to_none=True)
    objective(model, x, y).backward()
    return {k: p.grad for k, p in model.named_parameters()}


def test_raf_one_is_plain_cross_entropy(setup):
    model, fnet, x, y = setup
    a, b = grads(model, RAL(fnet, 1.0), x, y), grads(model, CrossEntropy(), x, y)
    for k in b: assert_close(a[k], b[k], rtol=0, atol=0)


def test_raf_zero_leaves_the_head_without_gradient(setup):
    model, fnet, x, y = setup
    g = grads(model, RAL(fnet, 0.0), x, y)
    assert g['net.fc.weight'] is None and g['net.fc.bias'] is None
    assert all(g[k] is not None and g[k].abs().sum() > 0 for k in g if k.startswith('net.features'))
    assert all(p.grad is None for p in fnet.parameters())


def test_the_fmce_net_is_unchanged_by_training_and_a_wrong_map_is_refused(tmp_path, setup):
    _, fnet, _, _ = setup
    before = {k: v.clone() for k, v in fnet.state_dict().items()}
    cfg = TrainConfig(dataset='digits', arch='small_cnn', epochs=2, size=16, batch_size=64, n_train=256, n_test=64)
    run = train(cfg, tmp_path/'r', RAL(fnet, 0.5, feature_shape=(128, 2, 2)))
    assert run.done and run.objective['name'] == 'ral' and run.objective['raf'] == 0.5
    assert all(torch.equal(before[k], v) for k, v in fnet.state_dict().items())
    with pytest.raises(ValueError, match=r'trained on maps of shape \(128, 2, 2\)'):
        train(TrainConfig(dataset='digits', arch='small_cnn', epochs=1, size=32, batch_size=64, n_train=128),
              tmp_path/'other-size', RAL(fnet, 0.5, feature_shape=(128, 2, 2)))
    assert not (tmp_path/'other-size'/'run.json').exists()


def test_the_push_toward_another_fmcs_by_hand(setup):
    # logits (1, 0, 0) toward FMCS 1 (index 0): -log(e / (e + 2)); toward FMCS 2: -log(1 / (e + 2))
    t, y, q = torch.zeros(1, 2), torch.tensor([0]), torch.tensor([[1., 0., 0.]])
    assert_close(ral_loss(t, y, q, 0., target=0), torch.tensor(math.log(math.e + 2) - 1))
    assert_close(ral_loss(t, y, q, 0.5, target=1), torch.tensor(0.5 * math.log(2) + 0.5 * math.log(math.e + 2)))
    model, fnet, x, yy = setup
    with torch.no_grad():
        logits = fnet(model.features(x))
        want = 0.3 * torch.nn.functional.cross_entropy(model(x), yy) + 0.7 * (logits.logsumexp(1) - logits[:, 1]).mean()
        assert_close(RAL(fnet, 0.3, target_fmcs=2)(model, x, yy), want)
    assert RAL(fnet, 0.3, target_fmcs=2).spec()['target_fmcs'] == 2 and 'target_fmcs' not in RAL(fnet, 0.3).spec()
    with pytest.raises(ValueError, match=r'target_fmcs must lie in 1\.\.4'): RAL(fnet, 0.3, target_fmcs=0)


def test_fine_tuning_starts_from_the_named_weights(tmp_path, setup):
    from fmce_nb.data import DeviceLoader
    from fmce_nb.train import FineTune, CrossEntropy
    _, fnet, _, _ = setup
    cfg = TrainConfig(dataset='digits', arch='small_cnn', epochs=2, size=16, batch_size=64, n_train=128, n_test=64)
    base = train(cfg, tmp_path/'base')
    obj = FineTune(RAL(fnet, 0.9), base, 1)
    model = build_model('small_cnn', 10)
    obj.prepare(model, DeviceLoader(cfg.split(), 64, 16))
    want = base.model(1).state_dict()
    for k, v in model.state_dict().items(): assert_close(v, want[k], rtol=0, atol=0)
    assert all(not p.requires_grad for p in obj.objective.net.parameters())      # RAL's own prepare ran too
    assert obj.spec()['start']['epoch'] == 1 and obj.spec() != FineTune(RAL(fnet, 0.9), base, 2).spec()
    assert obj.spec()['raf'] == 0.9 and FineTune(CrossEntropy(), base, 1).spec()['name'] == 'cross_entropy'
    with pytest.raises(ValueError, match='no weights of epoch 3'): FineTune(CrossEntropy(), base, 3)
