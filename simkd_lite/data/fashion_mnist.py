"""Fashion-MNIST: 60,000 / 10,000 grayscale 28x28 clothing images, 10 classes.

Offline first: Debian/Ubuntu ship the dataset as the `dataset-fashion-mnist` package, so a
machine without internet can still get it; we copy those files into ``<root>/FashionMNIST/raw/``
and let torchvision read them from there.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path
from urllib.error import URLError

from torchvision import datasets

from simkd_lite.data.core import DatasetInfo, DatasetNotFoundError, image_transforms, register_dataset

# Where `sudo apt-get install dataset-fashion-mnist` puts the four IDX .gz files.
# Module-level (read at call time) so tests, or an unusual system, can point it elsewhere.
DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                       "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

# Computed once over all 60,000 train images scaled to [0, 1]: mean 0.28604, std 0.35302.
FASHION_MNIST_MEAN, FASHION_MNIST_STD = (0.2860,), (0.3530,)


CROP_PADDING = 2  # RandomCrop(28, padding=2): the 28x28 analogue of CIFAR's 4 pixels on 32x32


def _raw_folder(root: Path) -> Path:
    return Path(root) / "FashionMNIST" / "raw"  # torchvision's layout: <root>/<class name>/raw


def _hint(root: Path) -> str:
    """How to get the dataset into ``<root>/FashionMNIST/raw/``."""
    raw = _raw_folder(root)
    return (f"Fashion-MNIST belongs in {raw}/ (the four *-ubyte.gz IDX files). Get it with one of:\n"
            f"  - Debian/Ubuntu (no internet needed later): sudo apt-get install dataset-fashion-mnist\n"
            f"    (installs {DEBIAN_FASHION_MNIST_DIR}/; simkd_lite copies it from there automatically)\n"
            f"  - with internet: simkd-lite data fetch fashion_mnist  (or load_dataset(..., download=True))\n"
            f"  - or copy {', '.join(f + '.gz' for f in FASHION_MNIST_FILES)} into {raw}/ yourself.")


def _gunzip(src: Path, dst: Path) -> None:
    """Decompress ``src`` to ``dst`` via a temporary file, so a half-written file never looks complete."""
    tmp = dst.with_name(dst.name + ".part")
    with gzip.open(src, "rb") as fin, open(tmp, "wb") as fout:
        shutil.copyfileobj(fin, fout)
    tmp.replace(dst)


def ensure_fashion_mnist_files(root: str | Path = "data", download: bool = False) -> bool:
    """Make the IDX files torchvision reads exist in ``<root>/FashionMNIST/raw/``; True if they do.

    Tries, in order: already unpacked; .gz files in raw/; Debian's copies; (if ``download``)
    torchvision's download. torchvision reads the *unpacked* files, so .gz files are unpacked next
    to them. (Debian recompressed the .gz files, so torchvision's md5s of the originals don't apply;
    torchvision still checks each file's header and item count when it reads it.)
    """
    raw = _raw_folder(Path(root))
    for stem in FASHION_MNIST_FILES:
        if (raw / stem).is_file():
            continue
        packed, debian = raw / f"{stem}.gz", DEBIAN_FASHION_MNIST_DIR / f"{stem}.gz"
        if not packed.is_file() and debian.is_file():
            raw.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(debian, packed)
        if packed.is_file():
            _gunzip(packed, raw / stem)
    if all((raw / stem).is_file() for stem in FASHION_MNIST_FILES):
        return True
    if not download:
        return False
    try:  # downloads the four .gz files (md5-checked by torchvision) and unpacks them
        datasets.FashionMNIST(str(root), train=False, download=True)
        return True
    except (RuntimeError, URLError, OSError):
        return False


def _locate(root: Path) -> dict:
    raw = _raw_folder(root)
    present = all((raw / s).is_file() or (raw / f"{s}.gz").is_file() for s in FASHION_MNIST_FILES)
    debian = all((DEBIAN_FASHION_MNIST_DIR / f"{s}.gz").is_file() for s in FASHION_MNIST_FILES)
    return {"present": present, "path": str(raw),
            "offline_copy": str(DEBIAN_FASHION_MNIST_DIR) if debian else None, "hint": _hint(root)}


@register_dataset("fashion_mnist", locate=_locate)
def _fashion_mnist(root: Path, augment: bool, download: bool):
    """Train augmentation (if ``augment``): pad 2, random 28x28 crop, random horizontal flip."""
    if not ensure_fashion_mnist_files(root, download=download):
        raise DatasetNotFoundError("Fashion-MNIST not found. " + _hint(root))
    train_tf, test_tf = image_transforms(FASHION_MNIST_MEAN, FASHION_MNIST_STD, 28, CROP_PADDING, augment)
    train = datasets.FashionMNIST(str(root), train=True, transform=train_tf)
    test = datasets.FashionMNIST(str(root), train=False, transform=test_tf)
    info = DatasetInfo("fashion_mnist", 10, 1, 28, FASHION_MNIST_MEAN, FASHION_MNIST_STD,
                       list(train.classes), len(train), len(test), crop_padding=2)
    return train, test, info
