"""The trainer under torchrun with DistributedDataParallel (gloo, 2 CPU processes) against one process with the same
global batch."""
import json, os, shutil, subprocess, sys
from pathlib import Path

import numpy as np
import pytest

from _guard import run

ARGS = ['--dataset', 'synthetic', '--arch', 'small_cnn', '--epochs', '4', '--size', '24', '--batch_size', '64',
        '--seed', '0', '--device', 'cpu', '--amp', 'false', '--quiet']   # fp32, pinned: RTOL is fp32's
TRAIN = [sys.executable, '-c', 'from fmce_nb.train import main; main()']
# BatchNorm statistics are per process on the CPU (SyncBatchNorm needs CUDA): each process normalizes its 32
# samples instead of the 64 of the global batch. That, and float summation order, is all that differs.
RTOL = 0.02


@pytest.mark.skipif(shutil.which('torchrun') is None, reason='torchrun not on PATH')
def test_two_processes_match_one(tmp_path):
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    one = run(TRAIN + ARGS + ['--out', str(tmp_path/'one')], env=env)
    assert one.returncode == 0, one.stderr
    two = run(['torchrun', '--standalone', '--nproc_per_node', '2', '--no-python'] + TRAIN[:1] + TRAIN[1:]
              + ARGS + ['--out', str(tmp_path/'two')], env={**env, 'GLOO_SOCKET_IFNAME': 'lo'})
    assert two.returncode == 0, two.stdout[-3000:] + two.stderr[-3000:]
    a = json.loads((tmp_path/'one'/'run.json').read_text())
    b = json.loads((tmp_path/'two'/'run.json').read_text())
    assert b['env']['processes'] == 2 and a['env']['processes'] == 1
    la, lb = np.array(a['history']['loss']), np.array(b['history']['loss'])
    print('one process:', la, '\ntwo processes:', lb, '\nrelative difference:', np.abs(la - lb) / la)
    np.testing.assert_allclose(lb, la, rtol=RTOL)
    assert abs(a['history']['test_acc'][-1] - b['history']['test_acc'][-1]) < 0.1
    assert sorted(p.name for p in (tmp_path/'two'/'weights').iterdir()) == [f'epoch_{e:04d}.safetensors' for e in range(1, 5)]
