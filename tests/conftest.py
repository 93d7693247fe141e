import os, tempfile
# One thread per process: `pytest -n 2` runs two workers on two cores, and the processes they start (fmce-repro, the
# notebooks' kernels) inherit this. Two processes of two OpenMP threads each on two cores run several times slower
# than two of one. Set before torch is imported; a value set by the caller wins.
os.environ.setdefault('OMP_NUM_THREADS', '1')
os.environ.setdefault('MPLBACKEND', 'Agg')
import pytest


@pytest.fixture(autouse=True)
def _temp_inside_tmp_path(tmp_path_factory, monkeypatch):
    "Every temporary file of a test, and of the processes it starts, goes under pytest's own folder, which pytest removes."
    d = tmp_path_factory.mktemp('tmp')
    monkeypatch.setenv('TMPDIR', str(d))
    monkeypatch.setattr(tempfile, 'tempdir', str(d))


def pytest_collection_modifyitems(config, items):
    "The smoke batch first: under `pytest -n 2` its worker starts it at once and the other worker runs the rest beside it."
    items.sort(key=lambda item: item.get_closest_marker('xdist_group') is None)
