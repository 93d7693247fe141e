"One epoch of a stacked sweep through the trainer's own train_epoch and evaluate gives each run what it gets alone."
import copy

import pytest
import torch

from fmce_nb.data import DeviceLoader, load_dataset
from fmce_nb.models import build_model
from fmce_nb.sweep import PerRun, StackedLoader, StackedModels
from fmce_nb.train import CrossEntropy, NonFiniteLossError, evaluate, train_epoch


def _two_runs():
    data = load_dataset('digits').subset(128, 0)
    loaders = [DeviceLoader(data, 32, 16, seed=s) for s in (0, 1)]     # each run its own batch order
    models = []
    for s in (0, 1):
        torch.manual_seed(s); models.append(build_model('small_cnn', data.num_classes))
    return data, loaders, models


def test_stacked_epoch_and_accuracy_equal_each_run_alone():
    data, loaders, models = _two_runs()
    stack = StackedModels(copy.deepcopy(m) for m in models)
    # SGD, whose step scales with the gradient: a sweep that averaged the runs' losses would take half steps
    got = train_epoch(stack, StackedLoader(loaders), torch.optim.SGD(stack.parameters(), 0.1), 1,
                      objective=PerRun(CrossEntropy()))
    alone = [train_epoch(m, l, torch.optim.SGD(m.parameters(), 0.1), 1) for m, l in zip(models, loaders)]
    assert isinstance(got, list) and len(got) == 2 and got[0] != got[1]
    torch.testing.assert_close(torch.tensor(got), torch.tensor(alone), rtol=1e-4, atol=1e-6)
    tests = [DeviceLoader(data, 64, 16, train=False) for _ in models]
    acc = evaluate(stack, StackedLoader(tests))
    torch.testing.assert_close(torch.tensor(acc), torch.tensor([evaluate(m, t) for m, t in zip(models, tests)]),
                               rtol=0, atol=1 / 128 + 1e-9)
    for r, m in enumerate(models):                          # the stack's weights moved as each model's did
        torch.testing.assert_close(stack.state_dict(r)['net.fc.bias'], m.net.fc.bias.detach(), rtol=1e-3, atol=1e-4)


def test_a_nonfinite_loss_in_one_run_names_its_batch():
    _, loaders, models = _two_runs()
    stack = StackedModels(models)

    class NaNInRun1AtBatch3:
        calls = 0
        def spec(self): return {'name': 'cross_entropy'}
        def __call__(self, m, x, y, idx=None):
            losses = PerRun(CrossEntropy())(m, x, y)
            self.calls += 1
            return losses * torch.tensor([1.0, float('nan') if self.calls == 3 else 1.0])

    with pytest.raises(NonFiniteLossError) as e:
        train_epoch(stack, StackedLoader(loaders), torch.optim.SGD(stack.parameters(), 0.0), 1, objective=NaNInRun1AtBatch3())
    assert (e.value.epoch, e.value.batch) == (1, 3)


def test_loaders_of_different_lengths_are_refused():
    data, loaders, _ = _two_runs()
    with pytest.raises(ValueError, match='as many batches'):
        StackedLoader([loaders[0], DeviceLoader(data.subset(64, 1), 32, 16)])
