"""A sweep of R runs trained as one stacked model (fmce_nb.sweep.train_sweep) against the same R runs trained one after
another (fmce_nb.train.train), measured in one process: training images per second over the epochs after the first
(each epoch's time covers its training steps and its test evaluation, as both record it), the two ways taken in turn
`--repeat` times with the median of the speed-ups quoted (the machine's speed drifts), and the largest difference
between the two ways' per-epoch losses. Training amplifies rounding, so that difference is set beside a control: the
same single runs computed a second time with another CPU thread count (on a GPU, with cuDNN's autotuner switched),
which rounds differently and is just as correct.

Usage: python bench/bench_sweep.py [--arch shufflenet_v2_x1_0] [--runs 4] [--size 32] [--epochs 3] [--objective ce|ral]
"""
import argparse, platform, statistics, tempfile
from pathlib import Path
import torch
from fmce_nb.runs import TrainConfig, resolve_device
from fmce_nb.train import train
from fmce_nb.sweep import train_sweep

p = argparse.ArgumentParser()
p.add_argument('--arch', default='shufflenet_v2_x1_0')
p.add_argument('--runs', type=int, default=4)
p.add_argument('--size', type=int, default=None)
p.add_argument('--n_train', type=int, default=None)
p.add_argument('--batch_size', type=int, default=None)
p.add_argument('--n_test', type=int, default=512)
p.add_argument('--epochs', type=int, default=3)
p.add_argument('--objective', choices=['ce', 'ral'], default='ce')
p.add_argument('--repeat', type=int, default=3)
a = p.parse_args()
dev = resolve_device('auto')
cuda = dev.type == 'cuda'
size = a.size or (64 if cuda else 32)
n_train = a.n_train or (8192 if cuda else 1024)
batch = a.batch_size or (256 if cuda else 64)
print(f"device: {dev} ({torch.cuda.get_device_name() if cuda else platform.processor() or platform.machine()}), "
      f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
print(f"{a.runs} runs of {a.arch} at {size}px, {n_train} fashion_mnist training images, batch {batch}, {a.epochs} epochs, "
      f"objective {a.objective}; times over epochs 2..{a.epochs}")

cfgs = [TrainConfig(dataset='fashion_mnist', arch=a.arch, epochs=a.epochs, size=size, batch_size=batch, n_train=n_train,
                    n_test=a.n_test, seed=s, device=str(dev)) for s in range(a.runs)]

def objective():
    if a.objective == 'ce': return None
    from fmce_nb.fmce_net import FMCENet
    from fmce_nb.models import build_model
    from fmce_nb.ral import RAL
    channels = build_model(a.arch).eval().features(torch.zeros(2, 3, size, size)).shape[1]
    torch.manual_seed(0)
    return RAL(FMCENet(channels, 10), 0.9)     # a frozen FMCE-Net: its weights do not change the work per step

images = a.runs * n_train // batch * batch * (a.epochs - 1)
speedups = []
for rep in range(a.repeat):
    with tempfile.TemporaryDirectory() as tmp:
        single = [train(c, Path(tmp)/f'seed{c.seed}', objective()) for c in cfgs]
    sweep, _ = train_sweep(cfgs, objective())
    t_single = sum(sum(r.history['seconds'][1:]) for r in single)
    t_sweep = sum(sweep[0]['seconds'][1:])
    speedups.append(t_single / t_sweep)
    print(f"  turn {rep + 1}: one after another {images / t_single:8,.0f} img/s, as one sweep {images / t_sweep:8,.0f} img/s, "
          f"speed-up {speedups[-1]:.2f}x")
if cuda: torch.backends.cudnn.benchmark = not torch.backends.cudnn.benchmark
else: threads = torch.get_num_threads(); torch.set_num_threads(1 if threads > 1 else 2)
with tempfile.TemporaryDirectory() as tmp:
    control = [train(c, Path(tmp)/f'seed{c.seed}', objective()).losses for c in cfgs]

def drift(losses): return max(abs(x - y) / abs(y) for l, r in zip(losses, single) for x, y in zip(l, r.losses))
print(f"speed-up, median of {a.repeat} turns: {statistics.median(speedups):.2f}x "
      f"(range {min(speedups):.2f} to {max(speedups):.2f})")
print(f"largest relative difference of an epoch's loss from the runs alone: sweep {drift([s['loss'] for s in sweep]):.1e}, "
      f"the runs alone computed again with {'cuDNN autotuning switched' if cuda else f'{torch.get_num_threads()} thread(s)'} "
      f"{drift(control):.1e}")
