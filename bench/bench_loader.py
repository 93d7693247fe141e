"""Device loader throughput against bare tensor indexing of the same batches, and seconds per smoke epoch on the CPU.

Both numbers come from this one run, so their ratio holds on a noisy machine. Usage: python bench/bench_loader.py
"""
import platform, sys, tempfile, time
import torch
from fmce_nb.data import load_dataset, DeviceLoader
from fmce_nb.runs import TrainConfig, resolve_device
from fmce_nb.train import train

dev = resolve_device('auto')
sync = (lambda: torch.cuda.synchronize()) if dev.type == 'cuda' else (lambda: None)


def imgs_per_s(fn, n_images, repeats=3):
    best = 0.0
    for _ in range(repeats):
        sync(); t = time.perf_counter(); fn(); sync()
        best = max(best, n_images / (time.perf_counter() - t))
    return best


def bench(ds, size, bs=256):
    dl = DeviceLoader(ds, bs, size, train=True, device=dev, seed=0)
    # "bare": the whole dataset already resized and normalized, a batch is one index operation
    full = torch.cat([dl.transform(torch.arange(i, min(i + 1024, len(ds)), device=dev)) for i in range(0, len(ds), 1024)])
    order, _ = dl._plan(0)
    n = len(dl) * bs
    def ours():
        for x, y in dl.batches(0): pass
    def bare():
        for i in range(len(dl)):
            idx = order[i * bs:(i + 1) * bs]; x, y = full[idx], dl.labels[idx]
    a, b = imgs_per_s(ours, n), imgs_per_s(bare, n)
    print(f"{ds.name:14s} {size:4d}px  device loader {a:12,.0f} img/s   bare indexing {b:12,.0f} img/s   ratio {a / b:5.2f}")


print(f"device: {dev} ({torch.cuda.get_device_name() if dev.type == 'cuda' else platform.processor() or platform.machine()}), "
      f"torch {torch.__version__}, threads {torch.get_num_threads()}")
print("loader (random crop + flip where allowed, resize, normalize, grey->RGB) vs bare tensor indexing:")
mn = load_dataset('mnist5k')
for size in ((32, 64, 224) if dev.type == 'cuda' else (32, 64)): bench(mn, size)

print("\nseconds per smoke epoch on the CPU (smoke profile: 1,024 mnist5k images, 32px, batch 256):")
for arch in ('small_cnn', 'shufflenet_v2_x1_0', 'resnet50'):
    with tempfile.TemporaryDirectory() as tmp:
        run = train(TrainConfig(dataset='mnist5k', arch=arch, epochs=2, n_train=1024, n_test=512, device='cpu'), tmp)
    s = run.history['seconds']
    print(f"  {arch:20s} {min(s):6.2f} s/epoch (train + test, best of {len(s)})")
