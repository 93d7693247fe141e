"""fmce-repro end to end: the smoke profile once (killed after its first cell and resumed: each distinct training run
trained once and shared, nothing redone), and tiny grids for folders that cannot collide, validation before anything
runs, failures recorded and submitit. The smoke batch is the one place the experiment notebooks run in the default
test command (nbdev_test skips them: `skip_exec` in their front matter)."""
import contextlib, io, json, os, signal, subprocess, sys, time
from pathlib import Path
from types import SimpleNamespace

import pytest

from _guard import HANG_GUARD, run

REPRO = [sys.executable, '-c', 'from fmce_nb.repro import main; main()']
TINY = dict(dataset='digits', arch='small_cnn', epochs=5, size=16, n_train=256, n_test=128, K=3)


def write_grid(tmp_path, grid):
    g = tmp_path/'grid.json'
    g.write_text(json.dumps(grid))
    return g


def repro(*args, **kw):
    return run(REPRO + list(map(str, args)), **kw)


def repro_here(*args):
    "`fmce-repro` in this process (no interpreter to start): for calls that run no notebook."
    from fmce_nb.repro import main
    out, err, code = io.StringIO(), io.StringIO(), 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try: main(list(map(str, args)))
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
            if isinstance(e.code, str): err.write(e.code + '\n')
    return SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())


def run_dirs(root, profile='smoke'):
    return sorted((Path(root)/'runs'/profile/'train').glob('*/run.json'))


def statuses(root, exp, profile='smoke'):
    return {p.parent.name: json.loads(p.read_text())['status']
            for p in (Path(root)/'results'/profile/exp).glob('*/status.json')}


def _wait_for_a_done_cell(root: Path, proc) -> Path:
    "The first cell folder whose status.json appears under `root` while the batch `proc` runs."
    t0 = time.time()
    while True:
        found = sorted((root/'results'/'smoke').glob('*/*/status.json'))
        if found: return found[0].parent
        assert proc.poll() is None, 'the batch ended before its first cell was done'
        assert time.time() - t0 < HANG_GUARD, f'no cell finished in {HANG_GUARD:.0f} s (the hang guard, FMCE_TEST_HANG_GUARD)'
        time.sleep(0.1)


@pytest.fixture(scope='module')
def smoke(tmp_path_factory):
    """`fmce-repro --profile smoke`, once for this module: killed (with its kernel) as soon as its first cell is done,
    then called again to finish. What each stage left is kept for the tests."""
    root = tmp_path_factory.mktemp('smoke')
    args = ['--profile', 'smoke', '--root', root]
    proc = subprocess.Popen(REPRO + list(map(str, args)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    first = _wait_for_a_done_cell(root, proc)
    os.killpg(proc.pid, signal.SIGKILL); proc.wait()
    status, dry = (first/'status.json').read_text(), repro_here(*args, '--dry-run').stdout
    weights = {p: p.stat().st_mtime_ns for p in (root/'runs').rglob('*.safetensors')}
    resumed = repro(*args)
    killed = SimpleNamespace(first=first, dry=dry, status_kept=(first/'status.json').read_text() == status,
                             weights_kept={p: p.stat().st_mtime_ns for p in weights} == weights)
    return SimpleNamespace(root=root, args=args, killed=killed, resumed=resumed)


@pytest.mark.xdist_group('smoke')
def test_a_killed_smoke_batch_finishes_without_redoing_work(smoke):
    k, r = smoke.killed, smoke.resumed
    assert k.dry.count('[done]') == 3 and k.dry.count('[done  ]') == 1 and k.dry.count('[todo  ]') == 19, k.dry
    assert f'[done  ] {k.first.parent.name}/{k.first.name}' in k.dry
    assert r.returncode == 0, r.stdout + r.stderr
    assert '3 of 3 training runs done or not needed, 1 of 20 cells done; training 0, running 19' in r.stdout
    assert k.status_kept, 'a finished cell ran again'
    assert k.weights_kept, 'a finished run was trained again'


@pytest.mark.xdist_group('smoke')
def test_smoke_trains_each_distinct_config_once_and_a_second_call_trains_nothing(smoke):
    # the smoke profile: every FMCE experiment reads the run of seed 0; the transfer experiment also seeds 1 and 2
    tmp_path, r = smoke.root, smoke.resumed
    assert r.returncode == 0, r.stdout + r.stderr
    assert 'WARNING' not in r.stdout + r.stderr, 'the batch output has noise in it'
    runs = run_dirs(tmp_path)
    configs = {json.dumps({**json.loads(p.read_text())['config'], 'device': None}, sort_keys=True) for p in runs}
    assert len(runs) == len(configs) == 3          # seed 0 for every experiment, seeds 1 and 2 for the transfer test
    used = set()
    for exp in ('table1', 'table2', 'scale', 'transfer', 'module_map', 'gradcam'):
        (cell,) = (tmp_path/'results'/'smoke'/exp).glob('*/results.json')
        rec = json.loads(cell.read_text())
        assert rec['schema_version'] == 2 and rec['provenance']['git_commit']
        used |= {rec['run']['dir']} | {r['dir'] for r in rec.get('runs', [])}
        assert not any(cell.parent.glob('run*/run.json')), f'{exp} trained a run of its own'
    ral = [json.loads(c.read_text()) for c in (tmp_path/'results'/'smoke'/'ral').glob('*/results.json')]
    assert len(ral) == 9 and {r['fmce_run']['dir'] for r in ral} <= used     # FMCE-Net++ reads the shared run of seed 0
    nets = [p.parent.name for p in (tmp_path/'runs'/'smoke'/'train').glob('*/fmce_net/*/fmce_net.json')]
    # relabelled nets, each trained once: FMCE-Net++'s shuffled-label control, the scale study's image labels on two
    # splits, on all its images' maps and on its baseline's 128
    assert [n[:9] for n in nets if not n.startswith('best-')] == ['shuffled-'] * 5, nets
    # fit_best nets kept in their runs: Table II's two splits of seed 0, the module map's two lower stages (its last is
    # Table II's image-split net), the transfer test's single-run nets of seeds 1 and 2 (seed 0's is Table II's again);
    # FMCE-Net++'s oracle is Table II's image-split net too, and the scale study reads Table II's two nets, plus two of
    # its own on its baseline's 128 images
    assert len([n for n in nets if n.startswith('best-')]) == 8, nets
    frpt = [json.loads(c.read_text()) for c in (tmp_path/'results'/'smoke'/'frpt').glob('*/results.json')]
    assert len(frpt) == 5 and {r['pretrained']['dir'] for r in frpt} <= used     # FR-PT starts from the shared run
    assert len(list((tmp_path/'runs'/'smoke'/'train').glob('*/frpt_targets/*/meta.json'))) == 2, 'two target stores (FR-PT and the control), each built once'
    assert used == {str(p.parent.resolve()) for p in runs}
    marker_files = sorted(p.name for p in (tmp_path/'runs'/'smoke'/'train').glob('*/markers/*.json'))
    assert len(marker_files) == 3, marker_files     # one marker setting, stored once per run
    stamp = {p: p.stat().st_mtime_ns for p in (tmp_path/'runs').rglob('*') if p.is_file()}
    stamp |= {p: p.stat().st_mtime_ns for p in (tmp_path/'results').rglob('*') if p.is_file()}
    again = repro(*smoke.args)
    assert again.returncode == 0, again.stdout + again.stderr
    assert 'training 0, running 0' in again.stdout
    assert {p: p.stat().st_mtime_ns for p in stamp} == stamp, 'a second call rewrote a run or a record'
    report = (tmp_path/'reports'/'smoke.md').read_text()
    assert '## FMCE Table I' in report and '## FMCE Table II' in report and '## FMCE at scale' in report and 'transfer to another run' in report
    assert '## FMCE beyond the paper: the module map' in report and '## Grad-CAM' in report and '## FMCE-Net++' in report and '## FR-PT' in report
    ledger = (tmp_path/'results'/'CLAIMS-smoke.md').read_text()         # the smoke records' claim ledger
    assert '## The claims' in ledger and '| FMCE | training converges' in ledger and '--profile smoke --only' in ledger
    dry = repro_here(*smoke.args, '--dry-run').stdout
    assert 'training runs (under' in dry and 'analysis cells (under' in dry
    assert dry.count('[done]') == 3 and dry.count('[done  ]') == 20
    # records kept, weights gone (as in a fresh checkout of committed results): nothing is trained again
    import shutil; shutil.rmtree(tmp_path/'runs')
    dry = repro_here(*smoke.args, '--dry-run').stdout
    assert dry.count('[skip]') == 3 and dry.count('[done  ]') == 20
    third = repro_here(*smoke.args)
    assert third.returncode == 0 and 'training 0, running 0' in third.stdout, third.stdout + third.stderr
    assert not list(tmp_path.glob('runs/**/run.json'))


def test_cells_that_differ_only_in_size_get_two_folders_and_two_runs(tmp_path):
    g = write_grid(tmp_path, {'table1': [dict(TINY, size=16), dict(TINY, size=20)]})
    r = repro_here('--profile', 'smoke', '--grid', g, '--root', tmp_path, '--dry-run')
    assert r.returncode == 0, r.stderr
    assert r.stdout.count('[todo]') == 2 and r.stdout.count('[todo  ] table1/') == 2
    assert 'digits-small_cnn-16px' in r.stdout and 'digits-small_cnn-20px' in r.stdout


def test_two_identical_cells_are_refused(tmp_path):
    g = write_grid(tmp_path, {'table1': [dict(TINY), dict(TINY)]})
    r = repro_here('--profile', 'smoke', '--grid', g, '--root', tmp_path)
    assert r.returncode != 0 and 'same parameters' in r.stderr
    assert not (tmp_path/'runs').exists() and not (tmp_path/'results').exists()


def test_unknown_parameter_is_an_error_before_anything_runs(tmp_path):
    g = write_grid(tmp_path, {'table1': [dict(TINY, epoch=3)]})
    r = repro_here('--profile', 'smoke', '--grid', g, '--root', tmp_path)
    assert r.returncode != 0 and "unknown parameter 'epoch'" in r.stderr
    assert not (tmp_path/'runs').exists()


def test_wrong_type_is_an_error(tmp_path):
    g = write_grid(tmp_path, {'table1': [dict(TINY, epochs='5')]})
    r = repro_here('--profile', 'smoke', '--grid', g, '--root', tmp_path)
    assert r.returncode != 0 and 'expects an int' in r.stderr


def test_a_failing_run_fails_its_cells_and_the_batch_goes_on(tmp_path):
    g = write_grid(tmp_path, {'table1': [dict(TINY, seed=0, dataset='cifar10'), dict(TINY, seed=1)]})   # no cifar10 here
    r = repro('--profile', 'smoke', '--grid', g, '--root', tmp_path)
    assert r.returncode == 1
    st = statuses(tmp_path, 'table1')
    bad = [json.loads((tmp_path/'results'/'smoke'/'table1'/c/'status.json').read_text()) for c in st if c.startswith('cifar10')]
    assert bad[0]['status'] == 'failed' and 'DatasetNotFoundError' in bad[0]['error'] and 'training run' in bad[0]['error']
    assert [v for c, v in st.items() if c.startswith('digits')] == ['done']
    assert 'Failed cells' in (tmp_path/'reports'/'smoke.md').read_text()


def test_training_and_cells_as_submitit_jobs_and_done_work_skipped(tmp_path):
    g = write_grid(tmp_path, {'table1': [dict(TINY, seed=5)]})
    r = repro('--profile', 'smoke', '--grid', g, '--root', tmp_path, '--executor', 'submitit-local')
    assert r.returncode == 0, r.stdout + r.stderr
    assert list(statuses(tmp_path, 'table1').values()) == ['done']
    logs = sorted((tmp_path/'runs'/'smoke'/'submitit').glob('*_log.out'))
    assert len(logs) == 2                                   # one training job, one cell job
    stamp = {p: p.stat().st_mtime_ns for p in tmp_path.rglob('*') if p.is_file() and 'reports' not in p.parts
             and 'figures' not in p.parts}
    again = repro('--profile', 'smoke', '--grid', g, '--root', tmp_path, '--executor', 'submitit-local')
    assert again.returncode == 0 and 'training 0, running 0' in again.stdout, again.stdout + again.stderr
    assert sorted((tmp_path/'runs'/'smoke'/'submitit').glob('*_log.out')) == logs, 'a done job was submitted again'
    assert {p: p.stat().st_mtime_ns for p in stamp} == stamp


def test_the_committed_cpu_records_are_the_cells_of_the_cpu_plan():
    # the committed cells, found on disk, against the plan's cell folders: a change of cell ids (or of a profile's
    # grid) that would make a cpu batch redo its 165 records fails here, not in a batch an hour later
    from fmce_nb.repro import plan
    from fmce_nb.report import find_repo
    repo = find_repo()
    committed = {p.parent for p in (repo/'results'/'cpu').glob('*/*/status.json')}
    pl = plan('cpu', repo)
    assert committed and committed <= {c.dir for c in pl.cells}
    # grids completed in pieces (a seed's records committed as they finish): the scale study (with the module map
    # and Grad-CAM on its largest ShuffleNet run), FR-PT and FMCE-Net++ on FashionMNIST
    waiting = [c for c in pl.cells if c.status != 'done']
    assert {c.experiment for c in waiting} <= {'scale', 'frpt', 'module_map', 'gradcam', 'ral'}
    assert all(c.full['dataset'] == 'fashion_mnist' for c in waiting if c.experiment in ('frpt', 'ral'))
    assert all(c.full['n_train'] == 16000 for c in waiting if c.experiment in ('module_map', 'gradcam'))
    assert {c.dir for c in pl.cells if c.status == 'done'} == committed


@pytest.mark.parametrize('content, says', [(None, 'no such file'), ('{"table1": [', 'is not valid JSON'),
                                           ('{"table1": {"seed": 0}}', 'must hold an object {experiment: [')])
def test_a_bad_grid_file_is_one_plain_error(tmp_path, content, says):
    g = tmp_path/'grid.json'
    if content is not None: g.write_text(content)
    r = repro_here('--profile', 'smoke', '--grid', g, '--root', tmp_path, '--dry-run')
    assert r.returncode != 0 and says in r.stderr and 'Traceback' not in r.stderr, r.stderr


def test_dry_run_lines_name_the_parameters_that_vary(tmp_path):
    g = write_grid(tmp_path, {'table1': [dict(TINY, seed=0), dict(TINY, seed=1, size=24)]})
    lines = [l for l in repro_here('--profile', 'smoke', '--grid', g, '--root', tmp_path, '--dry-run').stdout.splitlines()
             if 'table1/' in l]
    assert len(lines) == 2 and lines[0].endswith('  size=16 seed=0') and lines[1].endswith('  size=24 seed=1'), lines


def test_a_notebook_run_alone_refuses_a_misspelt_parameter(tmp_path):
    import papermill as pm
    from fmce_nb.report import find_repo
    nb = find_repo()/'nbs'/'experiments'/'table1_markers.ipynb'
    with pytest.raises(Exception, match="unknown parameter\\(s\\) 'epoch'"):
        pm.execute_notebook(str(nb), str(tmp_path/'out.ipynb'), parameters={'epoch': 3, 'out_dir': str(tmp_path)},
                            cwd=str(nb.parent), progress_bar=False, log_output=False)
    assert not (tmp_path/'run').exists()                       # stopped before any training


def test_cells_that_read_the_scale_studys_runs_share_them():
    # FMCE-Net++ on runs that do not memorize starts from the scale study's 4,000-image ShuffleNet runs, and the module
    # map and Grad-CAM read its 16,000-image run: the plan trains each of those runs once, for all of them
    from fmce_nb.repro import plan
    from fmce_nb.report import find_repo
    pl = plan('cpu', find_repo(), only=['scale', 'ral', 'module_map', 'gradcam'])
    shuffle = lambda n: {c.runs['run_dir'] for c in pl.cells if c.experiment == 'scale'
                         and c.full['arch'] == 'shufflenet_v2_x1_0_smallstem' and c.full['n_train'] == n}
    ral = {c.runs['fmce_run_dir'] for c in pl.cells if c.experiment == 'ral' and c.full['dataset'] == 'fashion_mnist'}
    assert len(ral) == 2 and ral < shuffle(4000)
    big = {c.runs['run_dir'] for c in pl.cells if c.experiment in ('module_map', 'gradcam') and c.full.get('n_train') == 16000}
    assert len(big) == 1 and big == shuffle(16000)
