"""Invariants that follow from the definitions of smoothing, CQI and the epoch markers, checked with hypothesis."""
import numpy as np
import pytest
from hypothesis import given, settings, assume, strategies as st

from fmce_nb.cqi import (cqi, smooth, epoch_markers, convergence_epoch, ConvergenceMonitor, NotConvergedError,
                         MarkerError, SMOOTHINGS)


@st.composite
def loss_curves(draw, min_len=25, max_len=160):
    "Training-like curves: decay towards a floor with multiplicative noise, all values > 0."
    n = draw(st.integers(min_len, max_len))
    start = draw(st.floats(0.5, 10))
    floor = draw(st.floats(1e-3, 0.3)) * start
    tau = draw(st.floats(2, n / 3))
    noise = draw(st.floats(0, 0.05))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    m = np.arange(n)
    fade = 0.5 * (1 + np.cos(np.pi * m / n))
    return (floor + (start - floor) * np.exp(-m / tau)) * np.exp(noise * fade * rng.standard_normal(n))


params = st.fixed_dictionaries({
    'K': st.integers(2, 10), 'mu': st.sampled_from([1e-4, 1e-3, 1e-2]), 'alpha': st.floats(0.5, 0.95),
    'window': st.integers(1, 10), 'smoothing': st.sampled_from(SMOOTHINGS)})


def markers_or_none(L, **kw):
    try: return epoch_markers(L, **kw)
    except (NotConvergedError, MarkerError): return None


@settings(max_examples=200, deadline=None)
@given(loss_curves(), params)
def test_markers_are_strictly_increasing_inside_the_convergence_window(L, p):
    mk = markers_or_none(L, **p)
    assume(mk is not None)
    e0, m = mk.e0, mk.markers
    assert len(m) == p['K'] and all(a < b for a, b in zip(m, m[1:]))
    assert e0 < m[0] and m[-1] == mk.ek <= len(L)
    assert e0 == int(np.argmax(L)) + 1
    c = cqi(L, p['alpha'], p['window'], p['smoothing'])
    # E_K is the first epoch after E_0 whose CQI is at most mu
    assert c[mk.ek - 1] <= p['mu'] and not np.any(c[e0:mk.ek - 1] <= p['mu'])


@settings(max_examples=150, deadline=None)
@given(loss_curves(), params, st.floats(1e-3, 1e3))
def test_scaling_losses_and_mu_together_leaves_the_markers(L, p, c):
    a = markers_or_none(L, **p)
    b = markers_or_none(L * c, **dict(p, mu=p['mu'] * c))
    assert (a is None) == (b is None)
    if a is not None: assert a.markers == b.markers and a.e0 == b.e0


@settings(max_examples=100, deadline=None)
@given(loss_curves(), params, st.floats(1e-3, 1e3))
def test_cqi_scales_linearly(L, p, c):
    kw = dict(alpha=p['alpha'], window=p['window'], smoothing=p['smoothing'])
    np.testing.assert_allclose(cqi(L * c, **kw), cqi(L, **kw) * c, rtol=1e-7, atol=1e-12 * c * L.max())


@settings(max_examples=150, deadline=None)
@given(loss_curves(), params, st.lists(st.floats(0.01, 0.99), min_size=1, max_size=30))
def test_epochs_after_convergence_do_not_move_the_markers(L, p, extra):
    "Smoothing and CQI are causal, so appending epochs (below the peak) after E_K changes nothing."
    a = markers_or_none(L, **p)
    assume(a is not None)
    longer = np.concatenate([L, np.array(extra) * L.max()])
    b = epoch_markers(longer, **p)
    assert a.markers == b.markers


@settings(max_examples=150, deadline=None)
@given(loss_curves(), params)
def test_a_stricter_threshold_never_converges_earlier(L, p):
    kw = dict(alpha=p['alpha'], window=p['window'], smoothing=p['smoothing'], on_no_convergence='last')
    e_loose = convergence_epoch(L, mu=p['mu'], **kw)[1]
    e_strict = convergence_epoch(L, mu=p['mu'] / 10, **kw)[1]
    assert e_strict >= e_loose


@settings(max_examples=100, deadline=None)
@given(loss_curves(), params)
def test_the_online_monitor_agrees_with_the_offline_markers(L, p):
    mon = ConvergenceMonitor(mu=p['mu'], K=p['K'], alpha=p['alpha'], window=p['window'], smoothing=p['smoothing'])
    for loss in L:
        if mon.update(loss): break
    seen = L[:mon.epoch]        # what the monitor was fed before it said stop
    try: ek = convergence_epoch(seen, p['mu'], p['alpha'], p['window'], p['smoothing'])[1]
    except NotConvergedError: ek = None
    assert mon.converged_epoch == ek
    np.testing.assert_allclose(mon.cqis[1:], cqi(L, p['alpha'], p['window'], p['smoothing'])[1:mon.epoch])


@given(st.lists(st.floats(0.1, 10), min_size=2, max_size=50), st.floats(0.01, 1))
def test_ema_stays_within_the_range_of_the_losses(L, alpha):
    S = smooth(L, alpha)
    assert S.min() >= min(L) - 1e-12 and S.max() <= max(L) + 1e-12


def test_constant_curve_has_zero_cqi():
    c = cqi([2.0] * 10)
    assert np.isnan(c[0]) and np.all(c[1:] == 0)


@pytest.mark.parametrize('bad,match', [
    ([], 'at least'), ([1.0], 'at least'), ([1.0, float('nan'), 0.5], 'epoch 2'), ([1.0, float('inf')], 'epoch 2'),
    ([1.0, -0.1, 0.2], 'epoch 2'), ([[1.0, 2.0]], '1-D')])
def test_bad_losses_are_refused_with_the_epoch(bad, match):
    with pytest.raises(ValueError, match=match): cqi(bad)


@pytest.mark.parametrize('kw,match', [({'K': 1}, 'K must'), ({'mu': 0}, 'mu must'), ({'mu': -1e-4}, 'mu must'),
                                      ({'alpha': 0}, 'alpha'), ({'alpha': 1.5}, 'alpha'), ({'window': 0}, 'window'),
                                      ({'smoothing': 'gauss'}, 'smoothing')])
def test_bad_parameters_are_refused(kw, match):
    with pytest.raises(ValueError, match=match): epoch_markers(np.exp(-np.arange(40) / 5), **kw)


def test_too_few_epochs_for_K():
    L = np.exp(-np.arange(20) / 1.5)
    with pytest.raises(MarkerError, match='too few'):
        epoch_markers(L, K=10, mu=0.1)        # flat enough already at epoch 2
    with pytest.raises(MarkerError, match='not strictly increasing'):   # the whole drop happens in the first epochs
        epoch_markers(np.r_[10.0, 1e-2 * np.exp(-np.arange(60) / 30)], K=10, mu=1e-9, alpha=0.01,
                      on_no_convergence='last')
