import os, tempfile
import pytest
os.environ.setdefault('MPLBACKEND', 'Agg')


@pytest.fixture(autouse=True)
def _temp_inside_tmp_path(tmp_path_factory, monkeypatch):
    "Every temporary file of a test, and of the processes it starts, goes under pytest's own folder, which pytest removes."
    d = tmp_path_factory.mktemp('tmp')
    monkeypatch.setenv('TMPDIR', str(d))
    monkeypatch.setattr(tempfile, 'tempdir', str(d))
