"""Our training loop at its defaults against the bare train step, measured in one run, per backbone and input size.

The bare step is an Adam step on one synthetic batch already on the device, in four modes: fp32 NCHW, fp32
channels-last, bf16 autocast NCHW and bf16 channels-last; the modes are timed in turns (several rounds, the median of
each), so a noisy machine slows them alike. Our loop is `train_epoch` over a `DeviceLoader` of real images at the
modes `speed_modes` picks for the arch and device. Goals: the loop >= 0.9x the bare step in its best mode, and for
small_cnn at 56 px >= 2x the bare fp32 NCHW step.

Usage: python bench/bench_train.py [--cases small_cnn:56,resnet18_smallstem:32] [--batch_size 64] [--rounds 3]
"""
import argparse, platform, statistics, time
import torch
import torch.nn.functional as F
from fmce_nb.data import load_dataset, DeviceLoader
from fmce_nb.models import build_model, speed_modes, cpu_bf16
from fmce_nb.runs import resolve_device
from fmce_nb.train import train_epoch

p = argparse.ArgumentParser()
p.add_argument('--cases', default=None, help='arch:size,... (default: the CPU or GPU list below)')
p.add_argument('--batch_size', type=int, default=None)
p.add_argument('--rounds', type=int, default=3)
p.add_argument('--seconds', type=float, default=1.5, help='about how long one timing lasts')
a = p.parse_args()
dev = resolve_device('auto')
cuda = dev.type == 'cuda'
cases = ([tuple(c.split(':')) for c in a.cases.split(',')] if a.cases else
         [('resnet50', 224), ('shufflenet_v2_x1_0', 224), ('resnet50_smallstem', 64), ('shufflenet_v2_x1_0_smallstem', 64)] if cuda else
         [('small_cnn', 56), ('small_cnn', 32), ('resnet18_smallstem', 32), ('shufflenet_v2_x1_0', 32),
          ('shufflenet_v2_x1_0_smallstem', 32), ('shufflenet_v2_x1_0_smallstem', 56), ('resnet50_smallstem', 32)])
bs = a.batch_size or (256 if cuda else 64)
sync = torch.cuda.synchronize if cuda else (lambda: None)
torch.backends.cudnn.benchmark = True
print(f"device: {dev} ({torch.cuda.get_device_name() if cuda else platform.processor() or platform.machine()}, "
      f"{torch.get_num_threads()} threads{', native bf16' if not cuda and cpu_bf16() else ''}), torch {torch.__version__}, batch {bs}")
print("images/s; bare step in each mode, then our loop at its defaults and its ratio to the bare step in that mode, "
      "in the best mode and in fp32 NCHW")
MODES = {'fp32 NCHW': (False, False), 'fp32 CL': (False, True), 'bf16 NCHW': (True, False), 'bf16 CL': (True, True)}
ds = load_dataset('mnist5k')

def setup(arch, size, amp, cl):
    torch.manual_seed(0)
    m = build_model(arch, 10).to(dev)
    if cl: m = m.to(memory_format=torch.channels_last)
    return m, torch.optim.Adam(m.parameters(), 1e-3)

def bare_fn(arch, size, amp, cl):
    m, opt = setup(arch, size, amp, cl)
    x = torch.randn(bs, 3, size, size, device=dev)
    if cl: x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (bs,), device=dev)
    def step(n):
        for _ in range(n):
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp): loss = F.cross_entropy(m(x), y)
            opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    return step

def loop_fn(arch, size, amp, cl, n):
    m, opt = setup(arch, size, amp, cl)
    dl = DeviceLoader(ds.subset(n * bs, 0), bs, size, device=dev, channels_last=cl, augment=True)
    return lambda _: train_epoch(m, dl, opt, 1, amp)

def rate(fn, n):
    sync(); t = time.perf_counter(); fn(n); sync()
    return n * bs / (time.perf_counter() - t)

for arch, size in cases:
    size = int(size)
    fns = {k: bare_fn(arch, size, *v) for k, v in MODES.items()}
    fns['fp32 NCHW'](2)                                                   # warm-up, then size each timing
    n = min(max(2, round(a.seconds * rate(fns["fp32 NCHW"], 2) / bs)), len(ds) // bs)   # the loop reads real images: at most the split
    for f in fns.values(): f(1)
    d = speed_modes(arch, dev, size)
    default = next(k for k, v in MODES.items() if v == (d['amp'], d['channels_last']))
    loop = loop_fn(arch, size, d['amp'], d['channels_last'], n); loop(0)
    res = {k: [] for k in [*MODES, 'loop']}
    for _ in range(a.rounds):
        for k, f in fns.items(): res[k].append(rate(f, n))
        res['loop'].append(rate(loop, n))
    med = {k: statistics.median(v) for k, v in res.items()}
    best = max(MODES, key=med.get)
    with torch.no_grad(): shape = tuple(build_model(arch).eval().features(torch.zeros(2, 3, size, size)).shape[1:])
    print(f"{arch:29s} {size:3d}px map {'x'.join(map(str, shape[1:])):5s} "
          + '  '.join(f"{k} {med[k]:7,.0f}" for k in MODES)
          + f"  | loop ({default}) {med['loop']:7,.0f}: {med['loop'] / med[default]:.2f}x its mode, "
            f"{med['loop'] / med[best]:.2f}x best ({best}), {med['loop'] / med['fp32 NCHW']:.2f}x fp32 NCHW", flush=True)
