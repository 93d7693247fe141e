"""Checkpoints of any model: the formats read, the key prefixes matched, the housekeeping, and the FMCS-Dataset built on them."""
import copy

import pytest
from types import SimpleNamespace
import torch
from torch import nn
from torch.testing import assert_close
from torch.utils.data import DataLoader, TensorDataset
from safetensors.torch import save_file

from fmce_nb.checkpoints import Checkpoints, read_state_dict, load_weights
from fmce_nb.cqi import ConvergenceMonitor
from fmce_nb.fmcs import CheckpointFMCS


def make():
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 4 * 4, 3))


def states(epochs):
    out = {}
    for e in epochs:
        torch.manual_seed(e); m = make()
        with torch.no_grad(): m[1].running_mean.uniform_(-1, 1); m[1].running_var.uniform_(0.5, 2)
        out[e] = m.state_dict()
    return out


IMAGES = torch.randn(10, 1, 8, 8, generator=torch.Generator().manual_seed(0))


def hand_map(sd, upto, x):
    "The map as slicing the Sequential computes it, with the weights of `sd` (eval mode)."
    m = make(); m.load_state_dict(sd); m.eval()
    with torch.no_grad(): return m[:upto + 1](x)


@pytest.mark.parametrize('form', ['memory', 'torch.save', 'bundle', 'safetensors', 'lightning'])
def test_every_form_reads_back_the_same_tensors(form, tmp_path):
    sd = states([1])[1]
    if form == 'memory': src, key = sd, None
    elif form == 'torch.save': torch.save(sd, src := tmp_path/'a.pt'); key = None
    elif form == 'bundle': torch.save({'model': sd, 'step': 7}, src := tmp_path/'b.pt'); key = 'model'
    elif form == 'safetensors': save_file(sd, src := tmp_path/'c.safetensors'); key = None
    else: torch.save({'state_dict': sd, 'epoch': 0, 'loops': {}}, src := tmp_path/'d.ckpt'); key = None
    got = read_state_dict(src, key=key)
    assert sorted(got) == sorted(sd)
    for k in sd: assert_close(got[k], sd[k], rtol=0, atol=0)


def test_a_pickled_module_is_refused_with_the_way_to_load_it(tmp_path):
    torch.save(make(), tmp_path/'m.pt')
    with pytest.raises(ValueError, match='weights_only=False'): read_state_dict(tmp_path/'m.pt')
    torch.save({'model': states([1])[1], 'optimizer': {'lr': 0.1}}, tmp_path/'b.pt')
    with pytest.raises(ValueError, match="key="): read_state_dict(tmp_path/'b.pt')
    with pytest.raises(FileNotFoundError, match='no checkpoint file at'): read_state_dict(tmp_path/'none.pt')


def test_a_prefix_is_stripped_or_added_and_nothing_else_is_guessed():
    sd = states([2])[2]
    m = load_weights(make(), {f'net.{k}': v for k, v in sd.items()})           # a LightningModule's keys
    assert_close(m[0].weight, sd['0.weight'], rtol=0, atol=0)
    m = load_weights(make(), {f'module.{k}': v for k, v in sd.items()})        # DistributedDataParallel's
    assert_close(m[7].bias, sd['7.bias'], rtol=0, atol=0)
    wrapper = nn.ModuleDict({'net': make()})
    assert_close(load_weights(wrapper, sd)['net'][4].weight, sd['4.weight'], rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"1 of the model's keys missing \(7.bias\)"):
        load_weights(make(), {k: v for k, v in sd.items() if k != '7.bias'})


def test_another_architecture_names_the_keys_and_shapes_that_differ():
    other = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 8 * 8, 3))
    with pytest.raises(ValueError) as e: load_weights(other, states([1])[1], name='epoch 1')
    msg = str(e.value)
    assert msg.startswith('epoch 1 does not fit this Sequential')
    assert "2 of the model's keys missing (3.bias, 3.weight)" in msg
    assert '0.weight: (4, 1, 3, 3) vs (8, 1, 3, 3)' in msg and 'keys the model lacks (1.bias' in msg


def test_the_folder_lists_its_own_names_only_and_says_what_it_looked_for(tmp_path):
    ck = Checkpoints(tmp_path, 'w-{epoch:03d}.safetensors')
    for e in (1, 4, 10): ck.save(states([e])[e], e)
    (tmp_path/'w-004.safetensors.tmp').write_text(''); (tmp_path/'w-4.safetensors').write_text(''); (tmp_path/'x-005.safetensors').write_text('')
    assert ck.saved_epochs() == [1, 4, 10]
    assert ck[4] == tmp_path/'w-004.safetensors'
    with pytest.raises(FileNotFoundError, match=r'epoch 5 has no checkpoint: looked for .*w-005\.safetensors \(saved epochs: \[1, 4, 10\]\)'):
        ck[5]
    assert ck.keep([4]) == [1, 10] and ck.saved_epochs() == [4]
    with pytest.raises(FileNotFoundError, match=r'cannot keep epochs \[1\]'): ck.keep([1, 4])
    assert ck.saved_epochs() == [4]                                            # a refused keep deletes nothing
    with pytest.raises(ValueError, match='holding {epoch} once'): Checkpoints(tmp_path, 'w.pt')


def test_keep_markers_keeps_everything_until_convergence_then_the_markers(tmp_path):
    # paper smoothing, B = 1: S = 3, 2.85, 1.85, 1, 1 and CQI_m = |S_m - S_{m-1}| = .15, 1, .85, 0: converged at epoch 5.
    # drops |log S_m - log 3| for m = 2..5: .051, .483, 1.099, 1.099; G = 1.099, the K = 2 target G/2 = .549 -> E_1 = 3.
    ck, monitor = Checkpoints(tmp_path), ConvergenceMonitor(K=2, window=1, smoothing='paper')
    sd = states([1])[1]
    for m, loss in enumerate([3., 2., 1., 1., 1.], 1):
        ck.save(sd, m); monitor.update(loss)
        mk = ck.keep_markers(monitor)
        if m < 5: assert mk is None and ck.saved_epochs() == list(range(1, m + 1))
    assert mk.markers == (3, 5) and ck.saved_epochs() == [3, 5]


def fmcs_inputs(tmp_path):
    sds = states([2, 5, 9])
    folder = Checkpoints(tmp_path/'st', 'epoch_{epoch}.safetensors')
    for e, sd in sds.items(): folder.save(sd, e)
    for e, sd in sds.items():
        torch.save(sd, tmp_path/f'{e}.pt')
        torch.save({'state_dict': {f'net.{k}': v for k, v in sd.items()}}, tmp_path/f'{e}.ckpt')   # a LightningModule's
    return sds, {
        'memory, in marker order': [sds[e] for e in (2, 5, 9)],
        'memory, by epoch': sds,
        'torch.save files by epoch': {e: tmp_path/f'{e}.pt' for e in sds},
        'safetensors folder': folder,
        'lightning files': [tmp_path/f'{e}.ckpt' for e in (2, 5, 9)]}


def test_the_fmcs_dataset_of_any_checkpoints_is_each_marker_s_map(tmp_path):
    sds, forms = fmcs_inputs(tmp_path)
    for form, cks in forms.items():
        fm = CheckpointFMCS(make(), cks, IMAGES, markers=[2, 5, 9], module='5')
        assert (fm.K, fm.N, fm.feature_shape) == (3, 10, (6, 4, 4)), form
        (maps, labels), = fm.batches([[3, 2], [0, 0], [7, 1]], batch_size=3, shuffle=False)
        assert labels.tolist() == [0, 1, 2]                                        # sorted by phase
        want = torch.cat([hand_map(sds[2], 5, IMAGES[[0]]), hand_map(sds[5], 5, IMAGES[[7]]), hand_map(sds[9], 5, IMAGES[[3]])])
        assert_close(maps, want, msg=form)


def test_a_dataloader_gives_the_maps_of_its_images_in_its_order():
    sds = states([1, 2])
    loader = DataLoader(TensorDataset(IMAGES, torch.arange(10)), batch_size=4)
    a = CheckpointFMCS(make(), [sds[1], sds[2]], loader, module='2', cache=True)
    assert a.N == 10
    assert_close(a.maps([9, 1], [0, 1]), torch.cat([hand_map(sds[1], 2, IMAGES[[9]]), hand_map(sds[2], 2, IMAGES[[1]])]))


def test_fmcs_of_checkpoints_refuses_bad_input_with_the_fix(tmp_path):
    sds, forms = fmcs_inputs(tmp_path)
    with pytest.raises(FileNotFoundError, match=r'epoch 7 has no checkpoint: looked for .*epoch_7\.safetensors'):
        CheckpointFMCS(make(), forms['safetensors folder'], IMAGES, markers=[2, 7], module='5')
    with pytest.raises(FileNotFoundError, match=r'marker epochs \[7\] have no checkpoint'):
        CheckpointFMCS(make(), sds, IMAGES, markers=[2, 7], module='5')
    with pytest.raises(ValueError, match=r"has no module named 'conv5'\. Closest"):
        CheckpointFMCS(make(), sds, IMAGES, markers=[2, 5], module='conv5')
    wide = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU())
    with pytest.raises(ValueError, match=r"the checkpoint of marker 2 does not fit this Sequential: .*0.weight: \(4, 1, 3, 3\) vs \(8, 1, 3, 3\)"):
        CheckpointFMCS(wide, sds, IMAGES, markers=[2, 5], module='1')
    with pytest.raises(ValueError, match=r'3 checkpoints for 2 markers'):
        CheckpointFMCS(make(), forms['lightning files'], IMAGES, markers=[2, 5], module='5')
    with pytest.raises(TypeError, match='one checkpoint per marker'):
        CheckpointFMCS(make(), sds[2], IMAGES, markers=[2, 5], module='5')


def test_a_missing_entry_or_an_empty_state_dict_is_named(tmp_path):
    torch.save({'model': states([1])[1]}, tmp_path/'b.pt')
    with pytest.raises(KeyError, match=r"has no entry 'weights'; its entries: \['model'\]"):
        read_state_dict(tmp_path/'b.pt', key='weights')
    with pytest.raises(ValueError, match=r'is not a state_dict \(a dict of tensors\): it holds \[\]'):
        read_state_dict({})


def test_a_prefix_two_levels_deep_is_stripped():
    sd = states([1])[1]
    m = load_weights(make(), {f'model.net.{k}': v for k, v in sd.items()})      # a wrapper inside a wrapper
    assert_close(m[4].weight, sd['4.weight'], rtol=0, atol=0)


def test_each_kind_of_difference_alone_is_refused_and_named(tmp_path):
    sd = states([1])[1]
    narrow = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                           nn.Conv2d(4, 5, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(5 * 4 * 4, 3))
    with pytest.raises(ValueError, match=r'this Sequential: shapes differ at 4\.weight: \(6, 4, 3, 3\) vs \(5, 4, 3, 3\)'):
        load_weights(narrow, sd)                                                 # the same keys, other shapes
    torch.save({**sd, 'extra.weight': torch.zeros(1)}, tmp_path/'more.pt')
    with pytest.raises(ValueError, match=r'more\.pt does not fit this Sequential: 1 keys the model lacks \(extra\.weight\)\. Is it'):
        load_weights(make(), tmp_path/'more.pt')                                 # a file is named by its path
    few = {k: v for k, v in sd.items() if k.startswith('7.')}
    with pytest.raises(ValueError, match=r"9 of the model's keys missing \(0\.bias, 0\.weight, 1\.bias, 1\.num_batches_tracked, \.\.\.\)"):
        load_weights(make(), few)


def test_a_pattern_must_be_a_file_name_and_an_empty_folder_says_none(tmp_path):
    with pytest.raises(ValueError, match='a file name holding {epoch} once'): Checkpoints(tmp_path, 'sub/epoch_{epoch}.pt')
    with pytest.raises(FileNotFoundError, match=r'\(saved epochs: none\)'): Checkpoints(tmp_path/'empty')[1]


def test_markers_from_a_monitor_a_bundle_key_and_the_names_of_unmarked_checkpoints(tmp_path):
    sds = states([1, 2, 3])
    monitor = ConvergenceMonitor(K=2, window=1, smoothing='paper')
    for loss in [3., 2., 1., 1., 1.]: monitor.update(loss)                     # markers (3, 5), as worked out above
    mk = monitor.markers()
    cks = {3: tmp_path/'3.pt', 5: tmp_path/'5.pt'}
    torch.save({'model': sds[3]}, cks[3]); torch.save({'model': sds[1]}, cks[5])
    fm = CheckpointFMCS(make(), cks, IMAGES, markers=mk, module='5', key='model')
    assert fm.markers == (3, 5)
    assert_close(fm.maps([4], [1]), hand_map(sds[1], 5, IMAGES[[4]]))
    assert all(not p.requires_grad for m in fm.backbones for p in m.parameters()) and not any(m.training for m in fm.backbones)
    wide = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU())
    with pytest.raises(ValueError, match='the checkpoint of marker 1 does not fit'):     # without markers: 1..K
        CheckpointFMCS(wide, [sds[1], sds[2]], IMAGES, module='1')


def test_images_as_a_loader_of_plain_tensors_and_bad_images(tmp_path):
    sds = states([1, 2])
    loader = DataLoader(IMAGES, batch_size=3)                                  # batches are tensors, not tuples
    fm = CheckpointFMCS(make(), [sds[1], sds[2]], loader, module='2')
    assert fm.N == 10 and fm.feature_shape == (4, 8, 8)
    assert_close(fm.maps([7], [0]), hand_map(sds[1], 2, IMAGES[[7]]))
    with pytest.raises(ValueError, match=r'images must be float \(N, C, H, W\).*torch.float32 \(10, 8, 8\)'):
        CheckpointFMCS(make(), [sds[1], sds[2]], IMAGES[:, 0], module='2')
    with pytest.raises(TypeError, match='batches are tensors or'):
        CheckpointFMCS(make(), [sds[1], sds[2]], [['not', 'tensors']], module='2')


def test_auto_cache_materializes_only_what_fits():
    sds = states([1, 2])
    need = 2 * 10 * 4 * 8 * 8 * 4                                              # K x N maps of (4, 8, 8), float32
    small = CheckpointFMCS(make(), [sds[1], sds[2]], IMAGES, module='2', cache='auto', cache_limit=need - 1)
    fits = CheckpointFMCS(make(), [sds[1], sds[2]], IMAGES, module='2', cache='auto', cache_limit=need)
    assert small._cache is None and fits._cache is None                        # nothing computed until a map is read
    fits.maps([0], [0])
    assert small._cache is None and fits._cache is not None and tuple(fits._cache.shape) == (2, 10, 4, 8, 8)
    assert_close(fits.maps([3, 5], [1, 1]), small.maps([3, 5], [1, 1]))


def test_auto_cache_without_a_limit_takes_half_the_free_memory(monkeypatch):
    import fmce_nb.fmcs as fmcs
    sds, need = states([1, 2]), 2 * 10 * 4 * 8 * 8 * 4                        # K x N maps of (4, 8, 8), float32
    free = lambda b: monkeypatch.setattr(fmcs.psutil, 'virtual_memory', lambda: SimpleNamespace(available=b))
    short, fits = (CheckpointFMCS(make(), [sds[1], sds[2]], IMAGES, module='2', cache='auto') for _ in range(2))
    free(2 * need - 2); short.maps([0], [0])                                   # half of it: one byte short
    free(2 * need); fits.maps([0], [0])                    # decided at the first read, by the memory free then
    assert short._cache is None and fits._cache is not None


def test_a_record_names_a_run_inside_the_checkout_by_its_relative_path(tmp_path, monkeypatch):
    # committed records used to carry the absolute path of the machine that made them
    import fmce_nb.runs as runs
    from fmce_nb.runs import TrainConfig, _write_run
    monkeypatch.setattr(runs, 'find_repo', lambda start=None: tmp_path/'checkout')
    inside = _write_run(tmp_path/'checkout'/'runs'/'cpu'/'train'/'r1', TrainConfig(), [2.0, 1.0])
    outside = _write_run(tmp_path/'scratch'/'r2', TrainConfig(), [2.0, 1.0])
    assert inside.summary()['dir'] == 'runs/cpu/train/r1'
    assert outside.summary()['dir'] == str((tmp_path/'scratch'/'r2').resolve())
