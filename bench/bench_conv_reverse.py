"""The three reverses of a stride-1 convolution (fmce_nb.frpt): milliseconds per call and relative residual
|conv(x) - y| / |y|, at the sizes the FR-PT authors report (16x16 and 32x32, channels expanding 2 -> 4 and shrinking
2 -> 1; batch 2, kernel 5, no padding), and the distance of each answer from the current input, on the CPU and on a
GPU where there is one. Every call solves the same problem, so the numbers compare within one run.

Usage: python bench/bench_conv_reverse.py [--repeats 5] [--device auto]
"""
import argparse, platform, time
import torch
from torch import nn
from fmce_nb.frpt import conv_reverse_dense, conv_reverse_cg, conv_reverse_fft
from fmce_nb.runs import resolve_device

p = argparse.ArgumentParser()
p.add_argument('--repeats', type=int, default=5)
p.add_argument('--device', default='auto')
a = p.parse_args()
dev = resolve_device(a.device)
sync = torch.cuda.synchronize if dev.type == 'cuda' else (lambda: None)
print(f"device: {dev} ({torch.cuda.get_device_name() if dev.type == 'cuda' else platform.machine()}), torch {torch.__version__}, "
      f"float32, batch 2, kernel 5, no padding, {a.repeats} timed calls after one warm-up")
g = torch.Generator().manual_seed(0)
print(f"{'case':24s} {'method':6s} {'ms/call':>9s} {'rel. residual':>14s} {'|x - x0| / |x0|':>16s}")
for size, cin, cout in ((16, 2, 4), (16, 2, 1), (32, 2, 4), (32, 2, 1)):
    conv = nn.Conv2d(cin, cout, 5, bias=False).to(dev)
    x0 = torch.randn(2, cin, size, size, generator=g).to(dev)
    y = torch.randn(2, cout, size - 4, size - 4, generator=g).to(dev)
    case = f"{size}x{size}, {'expand' if cout > cin else 'shrink'} {cin}->{cout}"
    for name, f in (('dense', conv_reverse_dense), ('cg', conv_reverse_cg), ('fft', conv_reverse_fft)):
        x = f(conv, x0, y); sync()
        t0 = time.perf_counter()
        for _ in range(a.repeats): x = f(conv, x0, y)
        sync(); ms = 1e3 * (time.perf_counter() - t0) / a.repeats
        with torch.no_grad():
            res = float((conv(x) - y).norm() / y.norm()); drift = float((x - x0).norm() / x0.norm())
        print(f"{case:24s} {name:6s} {ms:9.2f} {res:14.2e} {drift:16.3f}")
