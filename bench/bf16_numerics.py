"""Does bf16 autocast move what FMCE reads off a run? The same converging configuration trained in fp32 and in bf16
(channels-last both) for 3 seeds, paired by seed: the loss curve, E_K, the K = 10 markers and the final test top-1.
Runs are kept in runs/bench/bf16_numerics/ (each trained once; a second call only reads them).

Usage: python bench/bf16_numerics.py [--arch small_cnn] [--size 32] [--seeds 0,1,2]
"""
import argparse, json
import numpy as np
from fmce_nb.runs import TrainConfig, run_id
from fmce_nb.train import train
from fmce_nb.cqi import cqi, epoch_markers, paper_mu, NotConvergedError
from fmce_nb.report import paired_diff_ci, find_repo

p = argparse.ArgumentParser()
p.add_argument('--arch', default='small_cnn')
p.add_argument('--size', type=int, default=32)
p.add_argument('--dataset', default='mnist5k')
p.add_argument('--seeds', default='0,1,2')
a = p.parse_args()
seeds = [int(s) for s in a.seeds.split(',')]
root = find_repo()/'runs'/'bench'/'bf16_numerics'
base = dict(dataset=a.dataset, arch=a.arch, size=a.size, epochs=100, batch_size=64, augment=False, n_train=1000,
            n_test=1000, device='cpu', channels_last=True)
print(f"{a.arch} at {a.size} px on {a.dataset}: 1,000 training images, batch 64, 100 epochs, Adam 1e-3 + cosine, "
      f"no augmentation, channels-last; fp32 against bf16 autocast, seeds {seeds}")
runs = {}
for prec, amp in (('fp32', False), ('bf16', True)):
    for s in seeds:
        cfg = TrainConfig(**base, seed=s, amp=amp)
        runs[prec, s] = train(cfg, root/run_id(cfg))
        r = runs[prec, s]
        print(f"  {prec} seed {s}: final loss {r.losses[-1]:.2e}, top-1 {r.test_acc[-1]:.4f}, "
              f"{sum(r.history['seconds']):.0f} s", flush=True)

mu = paper_mu(10)
def marks(run):
    try: return epoch_markers(run.losses, K=10, mu=mu)
    except NotConvergedError:
        c = cqi(run.losses); m = int(np.nanargmin(c))
        print(f"    not converged: smallest CQI {c[m]:.2e} at epoch {m + 1} (mu {mu:g})"); return None
print("\nper seed (fp32 | bf16):")
rows = {}
for s in seeds:
    f, b = runs['fp32', s], runs['bf16', s]
    mf, mb = marks(f), marks(b)
    rel = np.abs(b.losses - f.losses) / f.losses
    rows[s] = dict(ek=(mf and mf.markers[-1], mb and mb.markers[-1]), top1=(f.test_acc[-1], b.test_acc[-1]),
                   markers=(mf and list(mf.markers), mb and list(mb.markers)), rel=rel)
    print(f"  seed {s}: E_K {rows[s]['ek'][0]} | {rows[s]['ek'][1]};  markers {rows[s]['markers'][0]} | {rows[s]['markers'][1]}")
    print(f"          top-1 {f.test_acc[-1]:.4f} | {b.test_acc[-1]:.4f};  loss |bf16 - fp32| / fp32: median {np.median(rel):.3f}, "
          f"epochs 1-10 {np.median(rel[:10]):.3f}, 91-100 {np.median(rel[90:]):.3f}")

def show(name, a_, b_, unit=''):
    d = paired_diff_ci(b_, a_)
    print(f"  {name}: bf16 - fp32 = {d['mean']:+.4g}{unit}, 95% CI [{d['ci'][0]:+.4g}, {d['ci'][1]:+.4g}] (n={d['n']})")
print("\npaired over seeds (bf16 - fp32):")
show('test top-1', [rows[s]['top1'][0] for s in seeds], [rows[s]['top1'][1] for s in seeds])
if all(None not in rows[s]['ek'] for s in seeds):
    show('E_K (epochs)', [rows[s]['ek'][0] for s in seeds], [rows[s]['ek'][1] for s in seeds])
    mk = np.array([[np.mean(np.abs(np.subtract(rows[s]['markers'][1], rows[s]['markers'][0]))) for s in seeds]])
    print(f"  markers: mean |bf16 - fp32| per seed {np.round(mk[0], 2).tolist()} epochs")
    # seed noise for comparison: the same precision, one seed against the next
    for prec, i in (('fp32', 0), ('bf16', 1)):
        noise = [np.mean(np.abs(np.subtract(rows[s]['markers'][i], rows[t]['markers'][i]))) for s, t in zip(seeds, seeds[1:] + seeds[:1])]
        ek = [abs(rows[s]['ek'][i] - rows[t]['ek'][i]) for s, t in zip(seeds, seeds[1:] + seeds[:1])]
        print(f"  seed noise, {prec}: markers mean |seed s - seed s+1| {np.round(noise, 2).tolist()}, E_K {ek}")
