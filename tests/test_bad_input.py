"""Bad input gets one clear error that names the problem, the file or value, and the fix, before anything is made."""
import json, sys

import numpy as np
import pytest

from _guard import run

from fmce_nb.runs import CorruptFileError, Run, TrainConfig, _write_run, weights_path
from fmce_nb.models import build_model

TRAIN = [sys.executable, '-c', 'from fmce_nb.train import main; main()']


@pytest.mark.parametrize('kw, says', [({'dataset': 'mnist10k'}, "unknown dataset 'mnist10k'; choose one of mnist, mnist5k"),
                                      ({'arch': 'vgg16'}, "unknown arch 'vgg16'; choose one of resnet50"),
                                      ({'device': 'gpu'}, "device 'gpu' is not a device; use 'auto', 'cpu'")])
def test_a_config_with_an_unknown_name_is_refused_when_made(kw, says):
    with pytest.raises(ValueError, match=f'^{says}'):
        TrainConfig(**kw)


def test_fmce_train_refuses_an_unknown_arch_before_making_a_folder_and_lists_the_choices(tmp_path):
    r = run(TRAIN + ['--arch', 'resnet19', '--out', str(tmp_path/'run')])
    assert r.returncode == 2 and "invalid choice: 'resnet19'" in r.stderr and 'resnet18_smallstem' in r.stderr
    assert not (tmp_path/'run').exists()
    r = run(TRAIN + ['--device', 'gpu', '--out', str(tmp_path/'run')])
    assert r.returncode == 2 and "device 'gpu' is not a device" in r.stderr and not (tmp_path/'run').exists()


def test_fmce_train_help_gives_every_option_a_line_and_lists_the_names():
    from fmce_nb.train import _parser
    p = _parser()
    actions = [a for a in p._actions if a.option_strings]
    assert len(actions) >= 23 and [a.dest for a in actions if not a.help] == []
    out = run(TRAIN + ['--help']).stdout
    assert 'small_cnn' in out and 'shufflenet_v2_x1_0_smallstem' in out and 'fashion_mnist' in out and '--download' in out


@pytest.fixture
def written_run(tmp_path):
    cfg = TrainConfig(dataset='digits', arch='small_cnn', epochs=2, size=16, amp=False)
    sd = build_model('small_cnn').state_dict()
    _write_run(tmp_path/'run', cfg, [1.0, 0.5], weights={1: sd, 2: sd})
    return tmp_path/'run'


def test_a_damaged_run_json_names_the_file_and_the_fix(written_run):
    (written_run/'run.json').write_text('{"config": {"dataset": ')
    with pytest.raises(CorruptFileError, match=f"{written_run/'run.json'} cannot be read .* delete {written_run} and run again"):
        Run(written_run)


def test_damaged_weights_name_the_file(written_run):
    weights_path(written_run, 2).write_bytes(b'\xff' * 100)        # safetensors reads this as a huge header length
    r = Run(written_run)
    r.model(1)                                                      # the intact epoch still loads
    with pytest.raises(CorruptFileError, match='epoch_0002.safetensors cannot be read'):
        r.model(2)


def test_a_truncated_target_store_names_its_file(tmp_path):
    from fmce_nb.frpt import TargetStore
    (tmp_path/'meta.json').write_text(json.dumps({'identity': {}}))
    np.save(tmp_path/'targets.npy', np.zeros((50, 10), np.float32))
    (tmp_path/'targets.npy').write_bytes((tmp_path/'targets.npy').read_bytes()[:500])
    with pytest.raises(CorruptFileError, match='targets.npy cannot be read'):
        TargetStore(tmp_path)
    (tmp_path/'meta.json').write_text('{')
    with pytest.raises(CorruptFileError, match='meta.json cannot be read'):
        TargetStore(tmp_path)


def test_a_missing_file_is_missing_not_damaged(tmp_path):
    from fmce_nb.runs import read_npy, read_weights
    for read, name in ((read_weights, 'w.safetensors'), (read_npy, 'a.npy')):
        with pytest.raises(FileNotFoundError):
            read(tmp_path/name)


# --- the six messages that were raw or wrong ----------------------------------------------------------------------

def test_a_truncated_torch_save_checkpoint_names_the_file_and_says_to_save_it_again(tmp_path):
    import torch
    from fmce_nb.checkpoints import read_state_dict
    p = tmp_path/'epoch_0003.pt'
    torch.save(build_model('small_cnn').state_dict(), p)
    p.write_bytes(p.read_bytes()[:len(p.read_bytes()) // 2])                 # a write cut off half way
    with pytest.raises(CorruptFileError, match='not a complete torch.save file') as e: read_state_dict(p)
    assert str(p) in str(e.value) and 'save that checkpoint again' in str(e.value)
    assert 'delete' not in str(e.value)                                       # the user's folder is not ours to delete


def test_a_damaged_safetensors_checkpoint_of_the_users_own_is_not_met_with_delete_its_folder(tmp_path):
    from fmce_nb.checkpoints import Checkpoints, load_weights
    ck = Checkpoints(tmp_path/'mine', 'epoch_{epoch}.safetensors')
    ck.save(build_model('small_cnn'), 1)
    ck[1].write_bytes(b'not safetensors at all')
    with pytest.raises(CorruptFileError, match='save that checkpoint again') as e: load_weights(build_model('small_cnn'), ck[1])
    assert str(ck[1]) in str(e.value) and 'delete' not in str(e.value)


@pytest.mark.parametrize('arch', ['small_cnn', 'simple_cnn'])
def test_a_whole_model_goes_through_torch_save(tmp_path, arch):
    import torch
    model = build_model(arch).eval()
    torch.save(model, tmp_path/'model.pt')                                    # no lambdas left to refuse pickling
    back = torch.load(tmp_path/'model.pt', weights_only=False).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad(): torch.testing.assert_close(back(x), model(x))


@pytest.mark.parametrize('empty', [{}, []])
def test_no_checkpoints_is_called_no_checkpoints(empty):
    import torch
    from fmce_nb.fmcs import CheckpointFMCS
    with pytest.raises(ValueError, match=f'^no checkpoints: got an empty {type(empty).__name__}'):
        CheckpointFMCS(build_model('small_cnn'), empty, torch.randn(4, 3, 32, 32), markers=[1, 2])


def test_losses_that_are_not_numbers_are_named_as_such():
    from fmce_nb.cqi import epoch_markers
    with pytest.raises(ValueError, match=r"^losses must be numbers, one mean loss per epoch .*these start \['a', 'b', 'c', \.\.\.\]"):
        epoch_markers(['a', 'b', 'c', 'd', 'e', 'f'], K=2)


def test_ral_under_ddp_names_the_wrapper_once():
    import torch
    from fmce_nb.fmce_net import FMCENet
    from fmce_nb.ral import RAL
    class DistributedDataParallel(torch.nn.Module):                          # a wrapper that hides features and head
        def __init__(self, m): super().__init__(); self.module = m
    with pytest.raises(NotImplementedError) as e:
        RAL(FMCENet(128, 3), 0.5)(DistributedDataParallel(build_model('small_cnn')), torch.randn(2, 3, 32, 32), torch.tensor([0, 1]))
    msg = str(e.value)
    assert msg.count('DistributedDataParallel') == 2 and '(e.g.' not in msg and 'in one process' in msg
