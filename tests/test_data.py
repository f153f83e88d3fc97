"""Tests for simkd_lite.data: registry, subsets, offline Fashion-MNIST, CIFAR fixtures, error messages.

Everything runs offline: Fashion-MNIST comes from Debian's dataset-fashion-mnist package (tests
skip if it is absent), CIFAR from ``write_cifar_fixture`` files written into tmp folders.
"""

import pickle
import tarfile
from urllib.error import URLError

import pytest
import torch

import simkd_lite.data.fashion_mnist as fashion_module
from simkd_lite.data import (DatasetInfo, DatasetNotFoundError, fetch_dataset, list_datasets, load_dataset,
                             locate_dataset, write_cifar_fixture)
from simkd_lite.data.fixtures import CIFAR10_NAMES, CIFAR100_NAMES

needs_debian_fashion = pytest.mark.skipif(
    not all((fashion_module.DEBIAN_FASHION_MNIST_DIR / f"{f}.gz").is_file() for f in fashion_module.FASHION_MNIST_FILES),
    reason=f"Debian's Fashion-MNIST files are not in {fashion_module.DEBIAN_FASHION_MNIST_DIR} "
           "(sudo apt-get install dataset-fashion-mnist)")


def _stack(dataset, n):
    """First ``n`` items as (images (n, C, H, W), labels (n,))."""
    images, labels = zip(*(dataset[i] for i in range(n)))
    return torch.stack(images), torch.tensor(labels)


# ---------------------------------------------------------------- registry and names
def test_registry_lists_all_datasets():
    assert {"digits", "fashion_mnist", "cifar10", "cifar100"} <= set(list_datasets())
    assert list_datasets() == sorted(list_datasets())


def test_unknown_name_lists_close_matches_and_available():
    with pytest.raises(ValueError) as error:
        load_dataset("cifar")
    message = str(error.value)
    assert "cifar10" in message and "cifar100" in message and "Available" in message and "digits" in message


def test_names_are_forgiving_about_case_and_dashes():
    assert locate_dataset("Fashion-MNIST", root="nowhere")["name"] == "fashion_mnist"


# ---------------------------------------------------------------- digits (bundled)
def test_digits_shapes_sizes_and_info():
    bundle = load_dataset("digits")
    info = bundle.info
    assert isinstance(info, DatasetInfo)
    assert (info.num_classes, info.in_channels, info.image_size) == (10, 1, 8)
    assert (info.train_size, info.test_size) == (1437, 360) == (len(bundle.train), len(bundle.test))
    assert info.class_names == [str(d) for d in range(10)]
    image, label = bundle.train[0]
    assert image.shape == (1, 8, 8) and image.dtype == torch.float32 and isinstance(label, int)
    images, labels = _stack(bundle.train, len(bundle.train))
    assert abs(images.mean()) < 0.05 and abs(images.std() - 1) < 0.05  # normalised with train statistics
    assert set(labels.tolist()) == set(range(10))


def test_digits_split_ignores_seed_and_subsets_are_seeded():
    a, b = load_dataset("digits", seed=0), load_dataset("digits", seed=123)
    assert torch.equal(a.train[5][0], b.train[5][0])  # the split itself is fixed
    s1 = load_dataset("digits", train_subset=100, test_subset=50, seed=7)
    s2 = load_dataset("digits", train_subset=100, test_subset=50, seed=7)
    s3 = load_dataset("digits", train_subset=100, test_subset=50, seed=8)
    assert (len(s1.train), len(s1.test)) == (100, 50) == (s1.info.train_size, s1.info.test_size)
    assert s1.train.indices == s2.train.indices and s1.train.indices != s3.train.indices


def test_subset_larger_than_the_set_is_a_clear_error():
    with pytest.raises(ValueError, match="train_subset=5000.*1437"):
        load_dataset("digits", train_subset=5000)
    with pytest.raises(ValueError, match="test_subset"):
        load_dataset("digits", test_subset=0)


# ---------------------------------------------------------------- Fashion-MNIST (offline, Debian files)
@pytest.fixture(scope="module")
def fashion_root(tmp_path_factory):
    return tmp_path_factory.mktemp("fashion")


@needs_debian_fashion
def test_fashion_mnist_loads_offline_from_debian_files(fashion_root):
    bundle = load_dataset("fashion_mnist", root=fashion_root, train_subset=500, test_subset=300,
                          augment=False, download=False)
    info = bundle.info
    assert (info.num_classes, info.in_channels, info.image_size) == (10, 1, 28)
    assert (info.train_size, info.test_size) == (500, 300)
    assert info.class_names[0] == "T-shirt/top" and info.class_names[-1] == "Ankle boot"
    assert len(bundle.train.dataset) == 60_000 and len(bundle.test.dataset) == 10_000
    assert (fashion_root / "FashionMNIST" / "raw" / "train-images-idx3-ubyte").is_file()
    images, labels = _stack(bundle.train, 500)
    assert images.shape == (500, 1, 28, 28) and 0 <= labels.min() and labels.max() <= 9
    assert abs(images.mean()) < 0.1 and abs(images.std() - 1) < 0.1  # mean 0.2860 / std 0.3530 fit


@needs_debian_fashion
def test_fashion_mnist_subset_is_seeded_and_reproducible(fashion_root):
    a = load_dataset("fashion_mnist", root=fashion_root, train_subset=64, seed=3, augment=False)
    b = load_dataset("fashion_mnist", root=fashion_root, train_subset=64, seed=3, augment=False)
    c = load_dataset("fashion_mnist", root=fashion_root, train_subset=64, seed=4, augment=False)
    assert a.train.indices == b.train.indices != c.train.indices
    assert torch.equal(_stack(a.train, 8)[0], _stack(b.train, 8)[0])


@needs_debian_fashion
def test_fashion_mnist_fetch_and_locate(fashion_root):
    folder = fetch_dataset("fashion_mnist", root=fashion_root)
    assert folder == fashion_root / "FashionMNIST" / "raw"
    where = locate_dataset("fashion_mnist", root=fashion_root)
    assert where["present"] and where["path"] == str(folder)


def test_missing_fashion_mnist_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(fashion_module, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "no-debian-package")
    root = tmp_path / "data"
    with pytest.raises(DatasetNotFoundError) as error:
        load_dataset("fashion_mnist", root=root, download=False)
    assert isinstance(error.value, FileNotFoundError)
    message = str(error.value)
    assert "apt-get install dataset-fashion-mnist" in message
    assert "simkd-lite data fetch fashion_mnist" in message
    assert str(root / "FashionMNIST" / "raw") in message
    assert locate_dataset("fashion_mnist", root=root)["present"] is False


# ---------------------------------------------------------------- CIFAR through fixtures
@pytest.mark.parametrize("name, names, batch_files", [
    ("cifar10", CIFAR10_NAMES, ["data_batch_1", "data_batch_5", "test_batch", "batches.meta"]),
    ("cifar100", CIFAR100_NAMES, ["train", "test", "meta"]),
])
def test_cifar_fixture_loads_through_load_dataset(tmp_path, name, names, batch_files):
    folder = write_cifar_fixture(tmp_path, name, n_train=120, n_test=40)
    assert all((folder / f).is_file() for f in batch_files)
    bundle = load_dataset(name, root=tmp_path, download=False)
    info = bundle.info
    assert (info.num_classes, info.in_channels, info.image_size) == (len(names), 3, 32)
    assert info.class_names == names and (info.train_size, info.test_size) == (120, 40)
    images, labels = _stack(bundle.test, 40)
    assert images.shape == (40, 3, 32, 32) and images.dtype == torch.float32
    assert 0 <= labels.min() and labels.max() < len(names)
    assert locate_dataset(name, root=tmp_path)["present"]
    assert fetch_dataset(name, root=tmp_path) == folder  # already there: no download


def test_cifar_augmentation_changes_train_images_sometimes(tmp_path):
    write_cifar_fixture(tmp_path, "cifar100", n_train=20, n_test=5)
    augmented = load_dataset("cifar100", root=tmp_path, augment=True)
    plain = load_dataset("cifar100", root=tmp_path, augment=False)
    torch.manual_seed(0)
    differs = [not torch.equal(augmented.train[i][0], plain.train[i][0]) for i in range(20)]
    assert any(differs)
    assert torch.equal(augmented.test[0][0], plain.test[0][0])  # the test set is never augmented


def test_cifar_fixture_has_the_official_pickle_layout(tmp_path):
    folder = write_cifar_fixture(tmp_path, "cifar100", n_train=10, n_test=5)
    with open(folder / "train", "rb") as f:
        train = pickle.load(f, encoding="bytes")  # the CIFAR website's recipe
    assert set(train) == {b"data", b"fine_labels", b"coarse_labels", b"filenames", b"batch_label"}
    assert train[b"data"].dtype.name == "uint8" and train[b"data"].shape == (10, 3072)
    with open(folder / "meta", "rb") as f:
        assert set(pickle.load(f, encoding="bytes")) == {b"fine_label_names", b"coarse_label_names"}
    folder = write_cifar_fixture(tmp_path, "cifar10", n_train=10, n_test=5)
    with open(folder / "batches.meta", "rb") as f:
        assert set(pickle.load(f, encoding="latin1")) == {"label_names", "num_cases_per_batch", "num_vis"}


def test_missing_cifar_says_where_to_put_it(tmp_path):
    with pytest.raises(DatasetNotFoundError) as error:
        load_dataset("cifar100", root=tmp_path, download=False)
    message = str(error.value)
    assert "cifar-100-python" in message and "cifar-100-python.tar.gz" in message
    assert "simkd-lite data fetch cifar100" in message


def test_failed_cifar_download_becomes_dataset_not_found(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise URLError("no internet in this test")
    monkeypatch.setattr("torchvision.datasets.cifar.download_and_extract_archive", offline)
    with pytest.raises(DatasetNotFoundError, match="simkd-lite data fetch cifar10"):
        load_dataset("cifar10", root=tmp_path, download=True)


def test_cifar_archive_with_wrong_md5_is_rejected(tmp_path):
    folder = write_cifar_fixture(tmp_path / "src", "cifar10", n_train=10, n_test=5)
    with tarfile.open(tmp_path / "cifar-10-python.tar.gz", "w:gz") as archive:
        archive.add(folder, arcname=folder.name)  # right layout, but not the official archive
    with pytest.raises(DatasetNotFoundError, match="md5"):
        load_dataset("cifar10", root=tmp_path)


def test_materialize_fast_path_gives_the_transforms_bits(tmp_path):
    """uint8 arrays normalised in one step == the dataset's own ToTensor + Normalize, image by image."""
    from torch.utils.data import DataLoader, Subset

    from simkd_lite.training.batches import _normalized_uint8, materialize

    write_cifar_fixture(tmp_path, "cifar100", n_train=120, n_test=40)
    bundle = load_dataset("cifar100", root=tmp_path, augment=False, download=False)
    for dataset in (bundle.test, Subset(bundle.train, [5, 3, 99, 0])):
        slow = [torch.cat(column) for column in zip(*DataLoader(dataset, batch_size=7))]
        assert _normalized_uint8(dataset) is not None
        fast = materialize(dataset)
        assert torch.equal(fast[0], slow[0]) and torch.equal(fast[1], slow[1])
    augmented = load_dataset("cifar100", root=tmp_path, augment=True, download=False)
    assert _normalized_uint8(augmented.train) is None  # random crops: the slow path, image by image
