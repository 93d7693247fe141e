"""The module report (05a_modules): CKA against an independent formula, grounding on a frozen and a re-initialized
module, the probe's split by image, the report's columns and dtypes."""
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from fmce_nb.modules import cka, gram, module_report, probe_split


def _cka_features(X, Y):                      # feature space, no Gram matrices: ||Y'X||^2 / (||X'X|| ||Y'Y||)
    X, Y = X - X.mean(0), Y - Y.mean(0)
    return float((Y.T @ X).norm() ** 2 / ((X.T @ X).norm() * (Y.T @ Y).norm()))


def test_cka_matches_the_feature_space_formula_and_its_invariances():
    g = torch.Generator().manual_seed(3)
    X = torch.randn(40, 7, generator=g, dtype=torch.float64)
    Y = torch.randn(40, 5, generator=g, dtype=torch.float64)
    Q, _ = torch.linalg.qr(torch.randn(7, 7, generator=g, dtype=torch.float64))
    assert cka(gram(X), gram(Y)) == pytest.approx(_cka_features(X, Y), abs=1e-12)
    assert cka(gram(X), gram(X)) == pytest.approx(1.0, abs=1e-12)
    assert cka(gram(X), gram(-2.5 * X @ Q + 1)) == pytest.approx(1.0, abs=1e-12)


def _net():
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 6, 3, padding=1), nn.ReLU(),
                         nn.Flatten(), nn.Linear(6 * 8 * 8, 4))


def _states():
    torch.manual_seed(0)
    net, states = _net(), []
    for k in range(4):                        # module '0' frozen; '2' nudged, and re-initialized at phase 3
        if k == 2: net[2].reset_parameters()
        elif k: net[2].weight.data += 1e-3 * torch.randn_like(net[2].weight)
        if k: nn.init.normal_(net[5].weight, std=1e-2)
        states.append({n: v.clone() for n, v in net.state_dict().items()})
    return states


def test_a_frozen_module_reads_no_change_and_a_reinitialized_one_reads_its_drop():
    xs = torch.randn(64, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    r = module_report(_net(), _states(), xs, ['0', '2'])
    frozen, reinit = r[r.module == '0'], r[r.module == '2']
    np.testing.assert_array_equal(frozen['weight_change'].iloc[1:].to_numpy(), np.zeros(3))
    np.testing.assert_allclose(frozen['cka_to_final'].to_numpy(), np.ones(4), rtol=0, atol=1e-12)
    assert reinit['weight_change'].iloc[2] > 0.5 > 0.05 > max(reinit['weight_change'].iloc[[1, 3]])
    assert reinit['cka_to_previous'].iloc[2] < min(reinit['cka_to_previous'].iloc[[1, 3]]) - 0.1
    assert list(reinit['matured_at']) == [3] * 4 and list(r['phase']) == [1, 2, 3, 4] * 2


def test_the_probe_splits_by_image_and_the_columns_are_pinned():
    tr, te = probe_split(101, seed=5)
    assert len(tr) == 50 and len(te) == 51 and not set(tr) & set(te) and sorted([*tr, *te]) == list(range(101))
    xs = torch.randn(40, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    r = module_report(_net(), _states(), xs, ['2'], labels=torch.arange(40) % 2)
    assert list(r.columns) == ['module', 'phase', 'epoch', 'cka_to_final', 'cka_to_previous', 'weight_change',
                               'probe_accuracy', 'matured_at']
    assert pd.api.types.is_string_dtype(r['module']) and str(r['matured_at'].dtype) == 'Int64'
    assert r['probe_accuracy'].between(0, 1).all() and r['epoch'].tolist() == [1, 2, 3, 4]
