"""CIFAR-10 and CIFAR-100: 50,000 / 10,000 RGB 32x32 images; CIFAR-100 is the SimKD paper's benchmark.

The files are torchvision's usual layout under ``root``: ``cifar-10-batches-py/`` and
``cifar-100-python/`` (or the official ``.tar.gz`` archives, unpacked on first load).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable
from urllib.error import URLError

from torchvision import datasets
from torchvision.datasets.utils import check_integrity, extract_archive

from simkd_lite.data.core import DatasetInfo, DatasetNotFoundError, image_transforms, register_dataset

CIFAR_STATS = {  # the official (RepDistiller / SimKD) normalisation constants: (mean, std) per channel
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)),
}


class CIFAR10Local(datasets.CIFAR10):
    """torchvision's CIFAR10, but it checks that the extracted files *exist* instead of re-hashing them.

    Why: torchvision compares every file with the official md5 on each load, which rejects the
    small files ``write_cifar_fixture`` writes. Real files are still verified where it matters:
    a download, or an archive you drop into ``root``, is checked against the official .tar.gz md5
    before it is extracted. So real data and fixtures go through this one class.
    (A file md5 of None makes torchvision's ``check_integrity`` test existence only.)
    """
    train_list = [[name, None] for name, _ in datasets.CIFAR10.train_list]
    test_list = [[name, None] for name, _ in datasets.CIFAR10.test_list]
    meta = {**datasets.CIFAR10.meta, "md5": None}


class CIFAR100Local(datasets.CIFAR100):
    """torchvision's CIFAR100 with the same existence-only file check as ``CIFAR10Local``."""
    train_list = [[name, None] for name, _ in datasets.CIFAR100.train_list]
    test_list = [[name, None] for name, _ in datasets.CIFAR100.test_list]
    meta = {**datasets.CIFAR100.meta, "md5": None}


CIFAR_CLASSES = {"cifar10": CIFAR10Local, "cifar100": CIFAR100Local}


CROP_PADDING = 4  # the official RandomCrop(32, padding=4)


def _hint(name: str, root: Path) -> str:
    """How to get ``name`` into ``root``."""
    cls = CIFAR_CLASSES[name]
    return (f"Get {name} into {root}/ either:\n"
            f"  - with internet: simkd-lite data fetch {name}  (or load_dataset(..., download=True)), or\n"
            f"  - put the extracted folder at {root / cls.base_folder}/, or the official archive\n"
            f"    {cls.url} at {root / cls.filename} (checked and unpacked on first load).")


def _unpack_archive(name: str, root: Path) -> None:
    """Extract ``<root>/cifar-*-python.tar.gz`` if it is there, not yet extracted, and matches the official md5."""
    cls = CIFAR_CLASSES[name]
    archive = root / cls.filename
    if (root / cls.base_folder).is_dir() or not archive.is_file():
        return
    if not check_integrity(str(archive), cls.tgz_md5):
        raise DatasetNotFoundError(f"{archive} does not match the official md5 (an incomplete download?). "
                                   f"Delete it and try again.\n" + _hint(name, root))
    extract_archive(str(archive), str(root))


def _build(name: str, root: Path, augment: bool, download: bool):
    """Shared by both: train augmentation (if ``augment``) is pad 4, random 32x32 crop, random flip."""
    cls = CIFAR_CLASSES[name]
    _unpack_archive(name, root)
    mean, std = CIFAR_STATS[name]
    train_tf, test_tf = image_transforms(mean, std, 32, CROP_PADDING, augment)
    try:
        train = cls(str(root), train=True, transform=train_tf, download=download)
        test = cls(str(root), train=False, transform=test_tf)
    except (RuntimeError, URLError, OSError) as error:  # files missing, or the download failed
        raise DatasetNotFoundError(f"{name} not found in {root}/ ({error}). " + _hint(name, root)) from error
    info = DatasetInfo(name, len(train.classes), 3, 32, mean, std, list(train.classes), len(train), len(test),
                       crop_padding=CROP_PADDING)
    return train, test, info


def _locator(name: str) -> Callable[[Path], dict]:
    def locate(root: Path) -> dict:
        cls = CIFAR_CLASSES[name]
        present = (root / cls.base_folder).is_dir() or (root / cls.filename).is_file()
        return {"present": present, "path": str(root / cls.base_folder), "hint": _hint(name, root)}
    return locate


@register_dataset("cifar10", locate=_locator("cifar10"))
def _cifar10(root: Path, augment: bool, download: bool):
    """CIFAR-10: 10 classes, names read from ``batches.meta``."""
    return _build("cifar10", root, augment, download)


@register_dataset("cifar100", locate=_locator("cifar100"))
def _cifar100(root: Path, augment: bool, download: bool):
    """CIFAR-100: 100 fine classes, names read from ``meta``."""
    return _build("cifar100", root, augment, download)
