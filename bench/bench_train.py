"""The training loop's images/s against the bare train step (same model, same batch, a synthetic tensor already on
the device), measured in one run; and the wall time of the smoke profile's full FMCE run (train + markers) on the CPU.

Usage: python bench/bench_train.py [--archs resnet50,shufflenet_v2_x1_0] [--size 64] [--batches 30]
"""
import argparse, platform, tempfile, time
import torch
import torch.nn.functional as F
from fmce_nb.data import load_dataset, DeviceLoader
from fmce_nb.models import build_model
from fmce_nb.runs import TrainConfig, resolve_device
from fmce_nb.train import train, train_epoch
from fmce_nb.cqi import epoch_markers, paper_mu

p = argparse.ArgumentParser()
p.add_argument('--archs', default=None)
p.add_argument('--size', type=int, default=None)
p.add_argument('--batch_size', type=int, default=256)
p.add_argument('--compile', action='store_true')
a = p.parse_args()
dev = resolve_device('auto')
cuda = dev.type == 'cuda'
archs = a.archs.split(',') if a.archs else (['resnet50', 'shufflenet_v2_x1_0'] if cuda else ['small_cnn', 'shufflenet_v2_x1_0'])
size = a.size or (64 if cuda else 32)
sync = (lambda: torch.cuda.synchronize()) if cuda else (lambda: None)
print(f"device: {dev} ({torch.cuda.get_device_name() if cuda else platform.processor() or platform.machine()}), torch {torch.__version__}")

ds = load_dataset('fashion_mnist' if cuda else 'mnist5k')
n_batches = 40 if cuda else 8
ds = ds.subset(n_batches * a.batch_size)
for arch in archs:
    torch.manual_seed(0)
    model = build_model(arch, ds.num_classes).to(dev)
    if cuda: model = model.to(memory_format=torch.channels_last)
    step_model = torch.compile(model) if a.compile else model
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    dl = DeviceLoader(ds, a.batch_size, size, device=dev, channels_last=cuda)
    x0 = torch.randn(a.batch_size, 3, size, size, device=dev)
    if cuda: x0 = x0.contiguous(memory_format=torch.channels_last)
    y0 = torch.randint(0, ds.num_classes, (a.batch_size,), device=dev)

    def bare():
        for _ in range(len(dl)):
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cuda):
                loss = F.cross_entropy(step_model(x0), y0)
            opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    def ours(): train_epoch(step_model, dl, opt, 1, amp=cuda)

    bare(); ours()   # warm-up (cudnn autotune, compile)
    res = {}
    for name, fn in (('bare', bare), ('loop', ours), ('bare', bare), ('loop', ours)):
        sync(); t = time.perf_counter(); fn(); sync()
        res[name] = max(res.get(name, 0), len(dl) * a.batch_size / (time.perf_counter() - t))
    print(f"{arch:20s} {size}px batch {a.batch_size}: loop {res['loop']:10,.0f} img/s  bare step {res['bare']:10,.0f} img/s  "
          f"ratio {res['loop'] / res['bare']:.3f}")

print("\nsmoke profile, full FMCE run on the CPU (train small_cnn on 1,024 mnist5k images for 8 epochs, then markers):")
t = time.perf_counter()
with tempfile.TemporaryDirectory() as tmp:
    run = train(TrainConfig(dataset='mnist5k', arch='small_cnn', epochs=8, n_train=1024, n_test=512, device='cpu'), tmp)
    mk = epoch_markers(run.losses, K=4, mu=paper_mu(run.num_classes), on_no_convergence="last")
wall = time.perf_counter() - t
print(f"  {wall:.1f} s wall (budget: 60 s); markers {list(mk.markers)}, test acc {run.test_acc[-1]:.3f}")
assert wall < 60, f"the smoke FMCE run took {wall:.0f} s, over its 60 s budget"
