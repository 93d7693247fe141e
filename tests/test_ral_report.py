"""The FMCE-Net++ report's comparisons on made-up records: which method is compared with which, in which family, and
the Holm-adjusted p-values, against a paired t-test and Holm's rule written out here."""
import math

import numpy as np
import pytest
from scipy import stats

from fmce_nb.experiments import ral_raf as rr


def rec(seed, top1, raf=1.0, control=None, label_smoothing=0.0, reading='finetune'):
    return {'run': {'config': {'dataset': 'mnist5k', 'arch': 'a', 'size': 32, 'n_train': 1000, 'seed': seed}, 'top1': top1},
            'fmce_run': {'id': 'f'}, 'reading': reading, 'method': 'label_smoothing' if label_smoothing else 'ral',
            'raf': raf, 'control': control, 'label_smoothing': label_smoothing, 'val_acc': top1}


BASE = [0.90, 0.91, 0.92, 0.90, 0.93]
ARMS = {(0.95, None): [0.91, 0.91, 0.94, 0.92, 0.93], (0.9, None): [0.92, 0.90, 0.95, 0.91, 0.96],
        (0.8, None): [0.89, 0.90, 0.92, 0.88, 0.91], (0.9, 'fmcs1'): [0.85, 0.86, 0.90, 0.84, 0.88],
        (0.9, 'random_net'): [0.92, 0.91, 0.94, 0.92, 0.95]}


def records(reading='finetune'):
    out = [rec(s, v, reading=reading) for s, v in enumerate(BASE)]
    for (raf, control), vals in ARMS.items(): out += [rec(s, v, raf, control, reading=reading) for s, v in enumerate(vals)]
    return out + [rec(s, v, label_smoothing=0.1, reading=reading) for s, v in enumerate([0.91, 0.90, 0.93, 0.91, 0.92])]


def paired_p(a, b):
    "Two-sided paired t-test written out: t = mean(d) / (sd(d) / sqrt(n)) on n - 1 degrees of freedom."
    d = np.subtract(a, b)
    t = d.mean() / (d.std(ddof=1) / math.sqrt(len(d)))
    return 2 * stats.t.sf(abs(t), len(d) - 1)


def holm_by_hand(ps):
    order = np.argsort(ps)
    adj, running = np.empty(len(ps)), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(ps) - rank) * ps[i]))
        adj[i] = running
    return adj


def test_methods_are_labelled_and_grouped_by_reading():
    (key, by), = rr._groups(records()).items()
    assert key[-1] == 'finetune'
    assert list(by) == ['RAF 1', 'RAF 0.95', 'RAF 0.9', 'RAF 0.8', 'RAF 0.9, toward FMCS 1', 'RAF 0.9, untrained FMCE-Net',
                        'label smoothing 0.1']
    assert len(rr._groups(records() + records('retrain'))) == 2


def test_the_families_and_their_holm_p():
    (_, by), = rr._groups(records()).items()
    cmp = rr._compared(by, 'finetune')
    assert {lab: (base, fam) for lab, (base, fam, _, _) in cmp.items()} == {
        'RAF 0.95': ('RAF 1', 'primary'), 'RAF 0.9': ('RAF 1', 'primary'), 'RAF 0.8': ('RAF 1', 'secondary'),
        'RAF 0.9, toward FMCS 1': ('RAF 0.9', 'controls'), 'RAF 0.9, untrained FMCE-Net': ('RAF 0.9', 'controls'),
        'label smoothing 0.1': ('RAF 0.9', 'controls')}
    prim = [paired_p(ARMS[(r, None)], BASE) for r in (0.95, 0.9)]
    np.testing.assert_allclose([cmp['RAF 0.95'][3], cmp['RAF 0.9'][3]], holm_by_hand(prim), rtol=1e-9)
    ctrl = [paired_p(ARMS[(0.9, 'fmcs1')], ARMS[(0.9, None)]), paired_p(ARMS[(0.9, 'random_net')], ARMS[(0.9, None)]),
            paired_p([0.91, 0.90, 0.93, 0.91, 0.92], ARMS[(0.9, None)])]
    np.testing.assert_allclose([cmp[lab][3] for lab in ('RAF 0.9, toward FMCS 1', 'RAF 0.9, untrained FMCE-Net',
                                                        'label smoothing 0.1')], holm_by_hand(ctrl), rtol=1e-9)
    assert cmp['RAF 0.8'][3] == pytest.approx(paired_p(ARMS[(0.8, None)], BASE), rel=1e-9)     # a family of one
    assert cmp['RAF 0.9'][2]['mean'] == pytest.approx(np.mean(np.subtract(ARMS[(0.9, None)], BASE)))


def test_without_fine_tuning_there_is_no_primary_family():
    (_, by), = rr._groups(records('retrain')).items()
    fams = {fam for _, fam, _, _ in rr._compared(by, 'retrain').values()}
    assert fams == {'secondary', 'controls'}


def test_the_primary_findings_give_the_detectable_effect_from_the_paired_spread():
    (_, by), = rr._groups(records()).items()
    d = np.subtract(ARMS[(0.9, None)], BASE)
    # 80% power, two-sided 5%, n = 5 pairs: an effect of 1.682 paired sd (the noncentral t, statsmodels' TTestPower)
    from statsmodels.stats.power import TTestPower
    mde = TTestPower().solve_power(nobs=5, alpha=0.05, power=0.8) * d.std(ddof=1)
    line = next(l for l in rr._findings(by, 'finetune') if l.startswith('- RAF 0.9 against RAF 1'))
    assert f"paired spread of {100 * d.std(ddof=1):.2f} pp" in line and f"at 80% power is {100 * mde:.2f} pp" in line


# --- the pooled design: two FMCE runs (starts) of runs that do not memorize, blocked by start ---------------------
POOLED_KEY = ('fashion_mnist', 'shufflenet_v2_x1_0_smallstem', 4000)
POOLED_VALS = {(1.0, None): {0: [0.90, 0.91, 0.92], 1: [0.88, 0.89, 0.90]},
               (0.9, None): {0: [0.91, 0.93, 0.92], 1: [0.90, 0.90, 0.92]},
               (0.9, 'random_net'): {0: [0.90, 0.92, 0.91], 1: [0.89, 0.91, 0.90]}}
STARTS = {0: 0.90, 1: 0.91}       # test top-1 of each FMCE run's E_K weights


def pooled_records():
    out = []
    for (raf, control), by_run in POOLED_VALS.items():
        for f, vals in by_run.items():
            for s, v in enumerate(vals):
                r = rec(s, v, raf, control)
                r['run']['config'].update(dataset=POOLED_KEY[0], arch=POOLED_KEY[1], n_train=POOLED_KEY[2])
                r['fmce_run'] = {'id': f'f{f}', 'config': {'seed': f}, 'top1': STARTS[f], 'epochs_done': 100}
                r['markers'] = {'ek': 100, 'converged': False}
                r['fmce_net'] = {'best_val_accuracy': 0.9, 'best_epoch': 5, 'feature_shape': [1024, 4, 4]}
                out.append(r)
    return out


def blocked_by_hand(d):
    "d: {start: differences}, equal sizes: mu = mean of the start means, s^2 pooled within starts, df = n - B."
    means = {f: np.mean(v) for f, v in d.items()}
    n, B = sum(map(len, d.values())), len(d)
    s2 = sum(((np.asarray(v) - means[f]) ** 2).sum() for f, v in d.items()) / (n - B)
    mu, se = np.mean(list(means.values())), math.sqrt(s2 / n)
    return mu, 2 * stats.t.sf(abs(mu / se), n - B)


def test_the_pooled_family_is_blocked_by_start_and_holm_adjusted():
    (key, by), = rr._by_start(pooled_records()).items()
    assert key == POOLED_KEY and set(by['RAF 1']) == {(f, s) for f in (0, 1) for s in range(3)}
    fam = rr._pooled_family(by, rr.POOLED[key])
    diff = lambda a, b: {f: np.subtract(POOLED_VALS[a][f], POOLED_VALS[b][f]) for f in (0, 1)}
    expect = [blocked_by_hand(diff((0.9, None), (0.9, 'random_net'))), blocked_by_hand(diff((0.9, None), (1.0, None)))]
    assert [(a, b) for a, b, _, _ in fam] == [('RAF 0.9', 'RAF 0.9, untrained FMCE-Net'), ('RAF 0.9', 'RAF 1')]
    for (_, _, d, p), (mu, p_raw), p_holm in zip(fam, expect, holm_by_hand([p for _, p in expect])):
        assert d['n'] == 6 and d['df'] == 4
        assert math.isclose(d['mean'], mu, rel_tol=1e-9) and math.isclose(d['p'], p_raw, rel_tol=1e-9)
        assert math.isclose(p, p_holm, rel_tol=1e-9)


def test_a_pooled_design_has_no_primary_family_per_start():
    for (*_, reading), by in rr._groups(pooled_records()).items():
        assert {fam for _, fam, _, _ in rr._compared(by, reading).values()} <= {'controls', 'secondary'}


def test_every_arm_against_its_start():
    (_, by), = rr._by_start(pooled_records()).items()
    vs = rr._against_start(by)
    mu, _ = blocked_by_hand({f: np.subtract(POOLED_VALS[(1.0, None)][f], STARTS[f]) for f in (0, 1)})
    assert math.isclose(vs['RAF 1']['mean'], mu, rel_tol=1e-9, abs_tol=1e-12)
    assert set(vs) == {'RAF 1', 'RAF 0.9', 'RAF 0.9, untrained FMCE-Net'}


def test_the_pooled_headline_places_the_paper_row_against_our_interval():
    (key, by), = rr._by_start(pooled_records()).items()
    head = rr._pooled_head(key, by)
    g = rr._paper_diff(POOLED_KEY[1], POOLED_KEY[0], 'RAF 0.9')      # the paper's FashionMNIST row
    (_, _, d, _), = [x for x in rr._pooled_family(by, rr.POOLED[key]) if x[1] == 'RAF 1']
    where = 'inside' if d['ci'][0] <= g <= d['ci'][1] else 'outside'
    assert f"lies {where} our interval" in head and 'an interim reading: 3 and 3 of the 10 seeds on 2 of the 2 FMCE runs' in head
    section = '\n'.join(rr._pooled_section(key, by))
    assert section.count('| RAF 0.9 (oracle) minus RAF 1 |') == 1
    assert section.count('| RAF 0.9 (oracle) minus RAF 0.9 (untrained FMCE-Net) |') == 1 and 'run 0:' in section and 'run 1:' in section


def test_the_interim_headline_counts_the_seeds_of_each_fmce_run_in_every_primary_arm():
    "FMCE run 1 lacks its last seed of RAF 1, and a secondary arm has one seed: the primary pairs are 3 and 2."
    recs = [r for r in pooled_records()
            if not (r['fmce_run']['config']['seed'] == 1 and r['run']['config']['seed'] == 2 and r['raf'] == 1.0
                    and r['control'] is None)]
    extra = dict(recs[0], control='shuffled_net', raf=0.9)
    (key, by), = rr._by_start(recs + [extra]).items()
    assert 'an interim reading: 3 and 2 of the 10 seeds on 2 of the 2 FMCE runs' in rr._pooled_head(key, by)


def test_the_pooled_secondary_arms_are_blocked_and_holm_adjusted_on_their_own():
    "Two secondary arms with 2 seeds per FMCE run: Holm over those two only, the primary family unchanged."
    sec_vals = {(0.9, 'shuffled_net'): {0: [0.90, 0.90], 1: [0.88, 0.91]}, (0.95, None): {0: [0.92, 0.91], 1: [0.90, 0.89]}}
    extra, base = [], pooled_records()[0]
    for (raf, control), by_run in sec_vals.items():
        for f, vals in by_run.items():
            for s, v in enumerate(vals):
                r = dict(base, raf=raf, control=control)
                r['run'] = {'config': dict(r['run']['config'], seed=s), 'top1': v}
                r['fmce_run'] = dict(r['fmce_run'], config={'seed': f}, top1=STARTS[f])
                extra.append(r)
    (key, by), = rr._by_start(pooled_records() + extra).items()
    sec = rr._pooled_secondary(key, by)
    assert [(a, b) for a, b, _, _ in sec] == [('RAF 0.9, shuffled-label FMCE-Net', 'RAF 0.9'), ('RAF 0.95', 'RAF 1')]
    diff = lambda a, b: {f: np.subtract(sec_vals[a][f], POOLED_VALS[b][f][:2]) for f in (0, 1)}
    expect = [blocked_by_hand(diff((0.9, 'shuffled_net'), (0.9, None))), blocked_by_hand(diff((0.95, None), (1.0, None)))]
    for (_, _, d, p), (mu, p_raw), p_holm in zip(sec, expect, holm_by_hand([p for _, p in expect])):
        assert d['n'] == 4 and d['df'] == 2
        assert math.isclose(d['mean'], mu, rel_tol=1e-9) and math.isclose(d['p'], p_raw, rel_tol=1e-9)
        assert math.isclose(p, p_holm, rel_tol=1e-9)
    alone = rr._pooled_family(rr._by_start(pooled_records())[key], rr.POOLED[key])
    assert [x[3] for x in rr._pooled_family(by, rr.POOLED[key])] == [x[3] for x in alone]
    section = '\n'.join(rr._pooled_section(key, by))
    assert 'Holm over these 2' in section and section.count('| RAF 0.95 (oracle) minus RAF 1 |') == 1
    assert section.count('| RAF 0.9 (shuffled-label FMCE-Net) minus RAF 0.9 (oracle) |') == 1
    assert 'Secondary' not in '\n'.join(rr._pooled_section(key, rr._by_start(pooled_records())[key]))
