"""A training process killed at any moment and started again finishes with the loss sequence of an uninterrupted run."""
import json, os, signal, subprocess, sys, time
from pathlib import Path

import numpy as np
import pytest

from _guard import HANG_GUARD, run

ARGS = ['--dataset', 'synthetic', '--arch', 'small_cnn', '--epochs', '6', '--size', '24', '--batch_size', '64',
        '--seed', '3', '--device', 'cpu', '--quiet']
CMD = [sys.executable, '-c', 'from fmce_nb.train import main; main()']


def run_cli(out):
    return run(CMD + ARGS + ['--out', str(out)])


def history(out): return json.loads((Path(out)/'run.json').read_text())['history']


def test_killed_run_resumes_to_the_same_losses(tmp_path):
    ref = run_cli(tmp_path/'ref')
    assert ref.returncode == 0, ref.stderr
    # start the same run, kill -9 it as soon as epoch 2's weights exist (in the middle of epoch 3)
    proc = subprocess.Popen(CMD + ARGS + ['--out', str(tmp_path/'killed')], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    target = tmp_path/'killed'/'weights'/'epoch_0002.safetensors'
    t0 = time.time()
    while not target.exists():
        assert proc.poll() is None, 'the run ended before it could be killed'
        assert time.time() - t0 < HANG_GUARD, f'epoch 2 did not finish in {HANG_GUARD:.0f} s (the hang guard, FMCE_TEST_HANG_GUARD)'
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL); proc.wait()
    h = history(tmp_path/'killed')
    assert 1 <= len(h['loss']) < 6, f"killed after {len(h['loss'])} epochs: the kill came too late to test resuming"
    again = run_cli(tmp_path/'killed')
    assert again.returncode == 0, again.stderr
    a, b = history(tmp_path/'ref'), history(tmp_path/'killed')
    assert len(b['loss']) == 6
    # on the CPU with the same seed the resumed run is bit-for-bit the uninterrupted one
    assert a['loss'] == b['loss'], (a['loss'], b['loss'])
    assert a['test_acc'] == b['test_acc']
    assert sorted(p.name for p in (tmp_path/'killed'/'weights').iterdir()) == [f'epoch_{e:04d}.safetensors' for e in range(1, 7)]


def test_cli_prints_the_loss_curve_and_accuracy(tmp_path):
    r = run([sys.executable, '-c', 'from fmce_nb.train import main; main()', '--dataset', 'digits',
             '--epochs', '3', '--size', '16', '--out', str(tmp_path/'d'), '--K', '2'])
    assert r.returncode == 0, r.stderr
    assert 'final test accuracy' in r.stdout and 'train loss' in r.stdout
    import re
    assert len([l for l in r.stdout.splitlines() if re.match(r'epoch\s+\d', l)]) == 3


def test_state_file_loads_without_unpickling_code(tmp_path):
    import torch
    r = run_cli(tmp_path/'r')
    assert r.returncode == 0
    st = torch.load(tmp_path/'r'/'state.pt', weights_only=True)   # raises if anything but tensors and plain data
    assert st['epoch'] == 6
