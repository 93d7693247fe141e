"""FMCE-Net training on the on-the-fly FMCS-Dataset against feature extraction alone (same checkpoints, same
batches), measured in one run; and the bytes the process writes while it builds the on-the-fly FMCS-Dataset and
trains on it, to any file (the kernel's count for this process; it must be 0: nothing is materialized).

Usage: python bench/bench_fmcs.py [--run RUN_DIR] [--K 4]   (without --run it trains a small run first)
"""
import argparse, os, platform, tempfile, time
from pathlib import Path
import torch
from fmce_nb.runs import TrainConfig, run_markers, resolve_device
from fmce_nb.train import train
from fmce_nb.fmcs import FMCSData, all_pairs
from fmce_nb.fmce_net import FMCENet, fit

p = argparse.ArgumentParser()
p.add_argument('--run', default=None)
p.add_argument('--K', type=int, default=4)
p.add_argument('--images', type=int, default=None)
a = p.parse_args()
dev = resolve_device('auto')
sync = torch.cuda.synchronize if dev.type == 'cuda' else (lambda: None)
print(f"device: {dev} ({torch.cuda.get_device_name() if dev.type == 'cuda' else platform.machine()}), torch {torch.__version__}")
tmp = Path(tempfile.mkdtemp())
run_dir = a.run or tmp/'run'
if a.run is None:
    train(TrainConfig(dataset='mnist5k', arch='shufflenet_v2_x1_0', epochs=a.K + 1, n_train=1024, size=32, device=str(dev)), run_dir)

def bytes_written() -> int | None:
    "Bytes this process has handed to write() so far, to any file, pipe or terminal (Linux: /proc/self/io, wchar)."
    try: return next(int(l.split()[1]) for l in open('/proc/self/io') if l.startswith('wchar:'))
    except OSError: return None

markers = run_markers(run_dir, K=a.K, on_no_convergence='last')   # computed once, stored in the run folder
before = bytes_written()                # from here to the check below nothing may write, not even print()
fm = FMCSData(run_dir, markers, dev, n_images=a.images)
pairs = all_pairs(fm.N, fm.K)

def extract():
    for x, y in fm.batches(pairs, 256, seed=0, epoch=0): x.sum()
net = FMCENet(fm.feature_shape[0], fm.K).to(dev)
def fit_one(): fit(net, fm, pairs, epochs=1, batch_size=256, seed=0)
extract(); fit_one()   # warm-up
res = {}
for name, fn in (('extract', extract), ('fit', fit_one)) * 2:
    sync(); t = time.perf_counter(); fn(); sync()
    res[name] = max(res.get(name, 0), len(pairs) / (time.perf_counter() - t))
written = None if before is None else bytes_written() - before
print(fm)
print(f"feature extraction alone : {res['extract']:10,.0f} maps/s")
print(f"FMCE-Net training epoch  : {res['fit']:10,.0f} maps/s   ratio {res['fit'] / res['extract']:.3f}")
print(f"bytes written by this process while building and training on the FMCS-Dataset: {written}")
assert written == 0 or written is None, f"the on-the-fly FMCS-Dataset wrote {written} bytes"
