"""fmce-repro end to end on a tiny grid: validation, kill and resume without redoing finished cells, submitit."""
import json, os, signal, subprocess, sys, time
from pathlib import Path

import pytest

REPRO = [sys.executable, '-c', 'from fmce_nb.repro import main; main()']
TINY = dict(dataset='digits', arch='small_cnn', epochs=5, size=16, n_train=256, n_test=128, K=3)


def write_grid(tmp_path, cells):
    g = tmp_path/'grid.json'
    g.write_text(json.dumps({'table1': cells}))
    return g


def repro(*args, timeout=600, **kw):
    return subprocess.run(REPRO + list(map(str, args)), capture_output=True, text=True, timeout=timeout, **kw)


def test_unknown_parameter_is_an_error_before_anything_runs(tmp_path):
    g = write_grid(tmp_path, [dict(TINY, epoch=3)])
    r = repro('--profile', 'smoke', '--grid', g, '--root', tmp_path)
    assert r.returncode != 0 and "unknown parameter 'epoch'" in r.stderr
    assert not (tmp_path/'runs'/'smoke'/'table1').exists() or not any((tmp_path/'runs'/'smoke'/'table1').rglob('status.json'))


def test_wrong_type_is_an_error(tmp_path):
    g = write_grid(tmp_path, [dict(TINY, epochs='5')])
    r = repro('--profile', 'smoke', '--grid', g, '--root', tmp_path)
    assert r.returncode != 0 and 'expects a int' in r.stderr


def test_killed_batch_finishes_without_redoing_cells(tmp_path):
    g = write_grid(tmp_path, [dict(TINY, seed=0), dict(TINY, seed=1), dict(TINY, seed=2)])
    cells = tmp_path/'runs'/'smoke'/'table1'
    first, last = cells/'digits-small_cnn-seed0'/'status.json', cells/'digits-small_cnn-seed2'/'status.json'
    proc = subprocess.Popen(REPRO + ['--profile', 'smoke', '--grid', str(g), '--root', str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    t0 = time.time()
    while not first.exists():
        assert proc.poll() is None, 'the batch ended before the first cell was done'
        assert time.time() - t0 < 400
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL); proc.wait()   # the batch and its kernel, half way
    assert not last.exists(), 'the kill came too late'
    done_before = json.loads(first.read_text())
    r = repro('--profile', 'smoke', '--grid', g, '--root', tmp_path, '--dry-run')
    assert '[done  ] table1/digits-small_cnn-seed0' in r.stdout and '[todo  ] table1/digits-small_cnn-seed2' in r.stdout
    r = repro('--profile', 'smoke', '--grid', g, '--root', tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert '1 of 3 cells already done' in r.stdout
    assert json.loads(first.read_text()) == done_before, 'a finished cell was run again'
    for s in range(3):
        st = json.loads((cells/f'digits-small_cnn-seed{s}'/'status.json').read_text())
        assert st['status'] == 'done'
        res = json.loads((cells/f'digits-small_cnn-seed{s}'/'results.json').read_text())
        assert len(res['markers']) == 3 and res['seed'] == s
    report = (tmp_path/'reports'/'smoke.md').read_text()
    assert report.count('| ours | digits | small_cnn |') == 3
    assert (tmp_path/'figures'/'smoke'/'table1-digits-small_cnn-seed0-fig3_convergence.png').exists()


def test_a_failing_cell_is_recorded_and_the_batch_goes_on(tmp_path):
    g = write_grid(tmp_path, [dict(TINY, seed=0, dataset='cifar10'), dict(TINY, seed=1)])   # cifar10 is not on disk
    r = repro('--profile', 'smoke', '--grid', g, '--root', tmp_path)
    assert r.returncode == 1
    cells = tmp_path/'runs'/'smoke'/'table1'
    bad = json.loads((cells/'cifar10-small_cnn-seed0'/'status.json').read_text())
    assert bad['status'] == 'failed' and 'DatasetNotFoundError' in bad['error']
    assert json.loads((cells/'digits-small_cnn-seed1'/'status.json').read_text())['status'] == 'done'
    assert 'Failed cells' in (tmp_path/'reports'/'smoke.md').read_text()


def test_cells_as_submitit_jobs(tmp_path):
    g = write_grid(tmp_path, [dict(TINY, seed=5)])
    r = repro('--profile', 'smoke', '--grid', g, '--root', tmp_path, '--executor', 'submitit-local')
    assert r.returncode == 0, r.stdout + r.stderr
    st = json.loads((tmp_path/'runs'/'smoke'/'table1'/'digits-small_cnn-seed5'/'status.json').read_text())
    assert st['status'] == 'done'
    assert any((tmp_path/'runs'/'smoke'/'submitit').glob('*_log.out'))
