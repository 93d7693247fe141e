"""The pieces of FMCE-Net++'s controls and of a pre-registered comparison: labels that say nothing, and the smallest
effect a paired test can see."""
import math

import numpy as np
import pytest
import torch
from scipy.optimize import brentq
from scipy.stats import nct, t as student_t

from fmce_nb.fmce_net import ShuffledPhases
from fmce_nb.fmcs import all_pairs
from fmce_nb.report import detectable_effect


class Pairs:
    "A source whose map of pair (n, k) is the constant 2-channel map 10 n + k."
    K, N, feature_shape, device = 3, 4, (2, 1, 1), torch.device('cpu')
    def maps(self, n, k, bounds=None):
        return torch.as_tensor(10 * np.asarray(n) + np.asarray(k), dtype=torch.float32)[:, None, None, None].expand(-1, 2, 1, 1)


def test_shuffled_phases_keep_the_maps_and_the_label_counts_and_relabel_each_pair_by_its_table():
    sh = ShuffledPhases(Pairs(), seed=3)
    seen = {}
    for x, lab in sh.batches(all_pairs(4, 3), batch_size=5, seed=0, epoch=1):
        for v, l in zip(x[:, 0, 0, 0].tolist(), lab.tolist()):
            n, k = divmod(int(v), 10)
            seen[(n, k)] = l
    assert sorted(seen) == [(n, k) for n in range(4) for k in range(3)]          # every pair once, its own map
    assert all(seen[(n, k)] == int(sh.labels[n, k]) for n, k in seen)
    assert np.bincount(list(seen.values())).tolist() == [4, 4, 4]
    want = np.random.default_rng(3).permutation(np.tile(np.arange(3), 4)).reshape(4, 3)
    assert sh.labels.tolist() == want.tolist()


def power_by_hand(d, n, alpha=0.05):
    c = student_t.ppf(1 - alpha / 2, n - 1)
    return nct.sf(c, n - 1, d * math.sqrt(n)) + nct.cdf(-c, n - 1, d * math.sqrt(n))


@pytest.mark.parametrize('n, hi', [(3, 3.5), (5, 2.5), (10, 2.0)])
def test_the_detectable_effect_has_power_80_percent_by_the_noncentral_t(n, hi):
    d = brentq(lambda d: power_by_hand(d, n) - 0.8, 0.3, hi)
    assert math.isclose(detectable_effect(0.015, n), 0.015 * d, rel_tol=1e-5)
    assert math.isclose(power_by_hand(detectable_effect(1.0, n), n), 0.8, rel_tol=1e-5)
    with pytest.raises(ValueError, match='at least 2 pairs'): detectable_effect(0.01, 1)
