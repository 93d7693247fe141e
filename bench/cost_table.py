"""What a cpu-profile run costs, per backbone and input size whose functional-module output is at least 4x4: the
wall seconds of a run of the cpu recipe (1,000 training images, batch 64, no augmentation, the test set of 1,000
images evaluated every epoch, a checkpoint written every epoch) at the modes `speed_modes` picks, measured over a few
epochs after the first and scaled to 100 epochs. The runs are written to a temporary folder and deleted.

Usage: python bench/cost_table.py [--cases small_cnn:32,small_cnn:56] [--epochs 3]
"""
import argparse, platform, shutil, tempfile, time
from dataclasses import replace
import torch
from fmce_nb.models import build_model
from fmce_nb.runs import TrainConfig
from fmce_nb.train import train

p = argparse.ArgumentParser()
p.add_argument('--cases', default='small_cnn:32,small_cnn:56,resnet18_smallstem:32,resnet18_smallstem:56,'
                                   'shufflenet_v2_x1_0_smallstem:32,shufflenet_v2_x1_0_smallstem:56,'
                                   'resnet50_smallstem:32,shufflenet_v2_x1_0:128')
p.add_argument('--epochs', type=int, default=3, help='epochs timed (the first of them is not counted)')
a = p.parse_args()
print(f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads), torch {torch.__version__}: "
      f"seconds of a 100-epoch cpu-recipe run, from epochs 2-{a.epochs}")
print(f"| arch | input | map | modes | train + test s/epoch | wall s/epoch | 100 epochs |\n|---|---|---|---|---|---|---|")
for case in a.cases.split(','):
    arch, size = case.split(':'); size = int(size)
    with torch.no_grad(): shape = tuple(build_model(arch).eval().features(torch.zeros(2, 3, size, size)).shape[1:])
    cfg = TrainConfig(dataset='mnist5k', arch=arch, size=size, epochs=100, batch_size=64, augment=False, n_train=1000,
                      n_test=1000, device='cpu')
    tmp = tempfile.mkdtemp()
    # the first epochs of the run, with the same per-epoch work (the cosine schedule's length changes nothing of it)
    short = replace(cfg, epochs=a.epochs)
    stamps = []
    run = train(short, tmp, log=lambda s: stamps.append(time.perf_counter()))
    wall = (stamps[-1] - stamps[0]) / (len(stamps) - 1)
    step = sum(run.history['seconds'][1:]) / (len(stamps) - 1)
    modes = run.meta['modes']
    print(f"| `{arch}` | {size} px | {shape[1]}x{shape[2]} | {'bf16' if modes['amp'] else 'fp32'}"
          f"{', CL' if modes['channels_last'] else ''} | {step:.2f} | {wall:.2f} | {100 * wall:,.0f} s ({100 * wall / 60:.1f} min) |", flush=True)
    shutil.rmtree(tmp)
