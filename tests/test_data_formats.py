"""The dataset loaders, run through torchvision's real classes on small files written in the real on-disk formats."""
import gzip, pickle, struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fmce_nb import data as D
from fmce_nb.data import load_dataset, DatasetNotFoundError, DatasetCorruptError, DeviceLoader

RAW = {True: ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte'), False: ('t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte')}


def write_idx(folder: Path, train: bool, images: np.ndarray, labels: np.ndarray, gz=False):
    "Write MNIST's idx format: big-endian magic (0x0803 images / 0x0801 labels), dims, then uint8 data."
    folder.mkdir(parents=True, exist_ok=True)
    img_name, lab_name = RAW[train]
    n, h, w = images.shape
    blobs = {img_name: struct.pack('>IIII', 0x0803, n, h, w) + images.astype(np.uint8).tobytes(),
             lab_name: struct.pack('>II', 0x0801, n) + labels.astype(np.uint8).tobytes()}
    for name, blob in blobs.items():
        if gz: (folder/(name + '.gz')).write_bytes(gzip.compress(blob))
        else: (folder/name).write_bytes(blob)


def fake_digits(n, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n).astype(np.uint8)


@pytest.mark.parametrize('name,folder', [('mnist', 'MNIST'), ('fashion_mnist', 'FashionMNIST')])
def test_idx_roundtrip(tmp_path, name, folder, monkeypatch):
    monkeypatch.setattr(D, 'DEBIAN_FASHION_MNIST', tmp_path/'no-debian')
    for train, n in ((True, 30), (False, 12)):
        write_idx(tmp_path/folder/'raw', train, *fake_digits(n, int(train)))
    for train, n in ((True, 30), (False, 12)):
        ds = load_dataset(name, root=tmp_path, train=train)
        imgs, labels = fake_digits(n, int(train))
        assert ds.images.shape == (n, 1, 28, 28) and ds.images.dtype == torch.uint8
        assert torch.equal(ds.images[:, 0], torch.from_numpy(imgs))
        assert torch.equal(ds.labels, torch.from_numpy(labels.astype(np.int64)))
        assert len(ds.classes) == 10
    assert load_dataset('mnist' if name == 'mnist' else 'fashion_mnist', root=tmp_path).hflip == (name == 'fashion_mnist')


def test_truncated_idx_is_a_clear_error(tmp_path):
    write_idx(tmp_path/'MNIST'/'raw', True, *fake_digits(20, 0))
    write_idx(tmp_path/'MNIST'/'raw', False, *fake_digits(5, 0))
    f = tmp_path/'MNIST'/'raw'/'train-images-idx3-ubyte'
    f.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(DatasetCorruptError, match='truncated or corrupt|could not read'):
        load_dataset('mnist', root=tmp_path)


def test_missing_mnist_says_where_and_how(tmp_path):
    with pytest.raises(DatasetNotFoundError) as e:
        load_dataset('mnist', root=tmp_path)
    msg = str(e.value)
    assert str(tmp_path/'MNIST'/'raw') in msg and 'download=True' in msg


def test_half_copied_mnist_lists_the_missing_files(tmp_path):
    write_idx(tmp_path/'MNIST'/'raw', True, *fake_digits(20, 0))
    with pytest.raises(DatasetNotFoundError, match='Missing files: t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte'):
        load_dataset('mnist', root=tmp_path)


def test_missing_fashion_mnist_names_the_debian_package(tmp_path, monkeypatch):
    monkeypatch.setattr(D, 'DEBIAN_FASHION_MNIST', tmp_path/'nothing-here')
    with pytest.raises(DatasetNotFoundError, match='apt-get install dataset-fashion-mnist'):
        load_dataset('fashion_mnist', root=tmp_path/'root')


def test_fashion_mnist_from_the_debian_layout(tmp_path, monkeypatch):
    "The Debian package ships .gz idx files; they are unzipped once into <root>/FashionMNIST/raw and read by torchvision."
    deb = tmp_path/'usr-share-datasets-fashion-mnist'
    write_idx(deb, True, *fake_digits(25, 1), gz=True)
    write_idx(deb, False, *fake_digits(10, 0), gz=True)
    monkeypatch.setattr(D, 'DEBIAN_FASHION_MNIST', deb)
    ds = load_dataset('fashion_mnist', root=tmp_path/'root')
    assert len(ds) == 25 and 'Debian' in ds.source
    assert (tmp_path/'root'/'FashionMNIST'/'raw'/'train-images-idx3-ubyte').exists()
    assert not list((tmp_path/'root'/'FashionMNIST'/'raw').glob('*.part'))
    assert len(load_dataset('fashion_mnist', root=tmp_path/'root', train=False)) == 10


@pytest.fixture
def no_md5(monkeypatch):
    "torchvision checks CIFAR files against the real archives' MD5; files written here can only pass an existence check."
    import torchvision.datasets.cifar as C
    monkeypatch.setattr(C, 'check_integrity', lambda fpath, md5=None: Path(fpath).is_file())


def write_cifar(root: Path, hundred: bool, n_per_file=6):
    rng = np.random.default_rng(0)
    folder = root/('cifar-100-python' if hundred else 'cifar-10-batches-py')
    folder.mkdir(parents=True)
    files = ['train', 'test'] if hundred else [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch']
    key = 'fine_labels' if hundred else 'labels'
    written = {}
    for f in files:
        data = rng.integers(0, 256, (n_per_file, 3072), dtype=np.uint8)
        labels = rng.integers(0, 100 if hundred else 10, n_per_file).tolist()
        with open(folder/f, 'wb') as fh: pickle.dump({'data': data, key: labels}, fh)
        written[f] = (data, labels)
    meta = {'fine_label_names': [f'c{i}' for i in range(100)]} if hundred else {'label_names': [f'c{i}' for i in range(10)]}
    with open(folder/('meta' if hundred else 'batches.meta'), 'wb') as fh: pickle.dump(meta, fh)
    return written


@pytest.mark.parametrize('hundred', [False, True])
def test_cifar_pickled_batches(tmp_path, no_md5, hundred):
    written = write_cifar(tmp_path, hundred)
    name = 'cifar100' if hundred else 'cifar10'
    tr, te = load_dataset(name, root=tmp_path), load_dataset(name, root=tmp_path, train=False)
    assert tr.images.shape == ((6 if hundred else 30), 3, 32, 32) and te.images.shape == (6, 3, 32, 32)
    data, labels = written['test' if hundred else 'test_batch']
    # CIFAR stores each image as 1024 red, then 1024 green, then 1024 blue bytes (row-major)
    assert torch.equal(te.images, torch.from_numpy(data.reshape(6, 3, 32, 32)))
    assert te.labels.tolist() == labels
    assert tr.num_classes == (100 if hundred else 10)


def test_cifar_with_wrong_checksums_is_reported_as_corrupt(tmp_path):
    write_cifar(tmp_path, False)
    with pytest.raises(DatasetCorruptError, match='checksum'):
        load_dataset('cifar10', root=tmp_path)


def write_image_tree(root: Path, classes=3, per_class=10, size=20):
    rng = np.random.default_rng(0)
    for c in range(classes):
        d = root/'mini_imagenet'/f'n0{c}'
        d.mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (size, size + 4, 3), dtype=np.uint8)).save(d/f'img_{i}.png')


def test_mini_imagenet_folder_split(tmp_path):
    write_image_tree(tmp_path)
    tr = load_dataset('mini_imagenet', root=tmp_path, size=16)
    te = load_dataset('mini_imagenet', root=tmp_path, train=False, size=16)
    assert tr.images.shape == (24, 3, 16, 16) and te.images.shape == (6, 3, 16, 16)
    assert torch.bincount(tr.labels).tolist() == [8, 8, 8] and torch.bincount(te.labels).tolist() == [2, 2, 2]
    assert tr.classes == ['n00', 'n01', 'n02']
    again = load_dataset('mini_imagenet', root=tmp_path, size=16)
    assert torch.equal(again.images, tr.images), "the split must be deterministic"
    flat = lambda d: {im.numpy().tobytes() for im in d.images}
    assert not flat(tr) & flat(te)


def test_mini_imagenet_corrupt_image_names_the_file(tmp_path):
    write_image_tree(tmp_path, classes=2, per_class=5)
    bad = tmp_path/'mini_imagenet'/'n01'/'img_3.png'
    bad.write_bytes(bad.read_bytes()[:40])
    with pytest.raises(DatasetCorruptError, match='img_3.png'):
        load_dataset('mini_imagenet', root=tmp_path)
        load_dataset('mini_imagenet', root=tmp_path, train=False)


def test_missing_mini_imagenet_explains_the_layout(tmp_path):
    with pytest.raises(DatasetNotFoundError, match='one sub-folder per class'):
        load_dataset('mini_imagenet', root=tmp_path)


def test_unknown_dataset():
    with pytest.raises(ValueError, match='choose one of'):
        load_dataset('imagenet21k')


def test_loader_epoch_visits_every_image_once():
    ds = load_dataset('synthetic', n=300)
    dl = DeviceLoader(ds, batch_size=64, size=24, drop_last=False)
    seen = torch.cat([y for _, y in dl.batches(3)])
    assert len(seen) == 300 and torch.equal(seen.sort().values, ds.labels.sort().values)


def test_debian_fashion_mnist_if_installed():
    "On a machine with `apt-get install dataset-fashion-mnist`, the real 60k/10k FashionMNIST loads offline."
    if not any(D.DEBIAN_FASHION_MNIST.glob('*-ubyte.gz')):
        pytest.skip('Debian package dataset-fashion-mnist is not installed')
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        tr, te = load_dataset('fashion_mnist', root=tmp), load_dataset('fashion_mnist', root=tmp, train=False)
    assert (len(tr), len(te)) == (60000, 10000)
    assert torch.bincount(tr.labels).tolist() == [6000] * 10
