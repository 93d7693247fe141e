"""The rehearsal of the GPU profiles on the CPU (`fmce-repro --profile reduced|paper --rehearse`): every kind of cell
of each profile at its own arch, input size, map shape and K, on a handful of images. Slow (minutes each): run with
`pytest -m slow tests`."""
import sys

import pytest

from _guard import run


@pytest.mark.slow
@pytest.mark.parametrize('profile', ['reduced', 'paper'])
def test_every_kind_of_cell_of_a_gpu_profile_runs_on_the_cpu(tmp_path, profile):
    from fmce_nb.repro import rehearsal_grid
    grid, covers = rehearsal_grid(profile)
    r = run([sys.executable, '-c', 'from fmce_nb.repro import main; main()', '--profile', profile, '--rehearse',
             '--root', str(tmp_path)])
    lines = [l for l in r.stdout.splitlines() if l.startswith('  done ') or l.startswith('  FAILED ')]
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert len(lines) == sum(map(len, grid.values())) and all(l.startswith('  done ') for l in lines), lines
    assert f"{len(lines)} of {len(lines)} cells done" in r.stdout


def test_a_cell_that_reads_fewer_maps_rehearses_with_fewer_than_its_images():
    # the cpu cell of fmcs_scale reads 1,000 images' maps beside 4,000: at the rehearsal's 8 images it must read fewer
    from fmce_nb.repro import rehearsal_grid, REHEARSAL
    grid, _ = rehearsal_grid('cpu', ['scale'])
    fewer = [c['baseline_images'] for c in grid['scale'] if c.get('baseline_images')]
    assert fewer and all(0 < b < REHEARSAL['n_train'] for b in fewer), fewer
