"""Fashion-MNIST: 60,000 / 10,000 grayscale 28x28 clothing images, 10 classes.

Offline first: Debian/Ubuntu ship the dataset as the `dataset-fashion-mnist` package, so a
machine without internet can still get it; we copy those files into ``<root>/FashionMNIST/raw/``
and let torchvision read them from there.

Nothing half-written ever looks complete: files are copied and unpacked under a temporary name and
renamed when whole. Every unpacked file is checked on every load: its size, its IDX header (magic
number and dimensions: 60,000 / 10,000 images of 28x28) and, for the small label files, the md5 (so
a label changed in place, or out of the 0..9 range, cannot pass); each file's md5 is also checked
when it is made. A truncated or corrupt file (an earlier full disk, a killed copy, an edit) is
removed and made again from the .gz beside it or Debian's copy, with a message; with no copy to make
it again from, the load stops with one line naming the file and what is wrong with it.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import shutil
import sys
import zlib
from pathlib import Path
from urllib.error import URLError

from torchvision import datasets

from simkd_lite.data.core import DatasetInfo, DatasetNotFoundError, image_transforms, register_dataset
from simkd_lite.errors import SimKDLiteError, describe_os_error, writing
from simkd_lite.tempfiles import temporary_path

# Where `sudo apt-get install dataset-fashion-mnist` puts the four IDX .gz files.
# Module-level (read at call time) so tests, or an unusual system, can point it elsewhere.
DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                       "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
# (size in bytes, md5) of each unpacked IDX file: the same bytes whichever .gz they came from
# (Debian recompressed the archives, so the md5s torchvision knows, of its .gz files, do not apply).
FASHION_MNIST_IDX = {
    "train-images-idx3-ubyte": (47_040_016, "f4a8712d7a061bf5bd6d2ca38dc4d50a"),
    "train-labels-idx1-ubyte": (60_008, "9018921c3c673c538a1fc5bad174d6f9"),
    "t10k-images-idx3-ubyte": (7_840_016, "8181f5470baa50b63fa0f6fddb340f0a"),
    "t10k-labels-idx1-ubyte": (10_008, "15d484375f8d13e6eb1aabb0c3f46965"),
}

# (IDX magic number, dimensions) of each file: the header torchvision would otherwise assert on.
FASHION_MNIST_HEADERS = {
    "train-images-idx3-ubyte": (2051, (60_000, 28, 28)),
    "train-labels-idx1-ubyte": (2049, (60_000,)),
    "t10k-images-idx3-ubyte": (2051, (10_000, 28, 28)),
    "t10k-labels-idx1-ubyte": (2049, (10_000,)),
}

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


def _say(message: str) -> None:
    print(f"simkd-lite: {message}", file=sys.stderr)


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _copy(src: Path, dst: Path) -> None:
    """Copy via a temporary name, so an interrupted copy (a full disk) never looks like the file."""
    tmp = temporary_path(dst)
    try:
        with writing(dst):
            shutil.copyfile(src, tmp)
            tmp.replace(dst)
    finally:
        tmp.unlink(missing_ok=True)


def _gunzip(src: Path, dst: Path) -> bool:
    """Decompress ``src`` to ``dst`` via a temporary file; False (and ``src`` removed) if ``src`` is corrupt
    or does not unpack to the known file."""
    tmp = temporary_path(dst)
    try:
        with writing(dst):
            try:
                with gzip.open(src, "rb") as fin, open(tmp, "wb") as fout:
                    shutil.copyfileobj(fin, fout)
            except (EOFError, gzip.BadGzipFile, zlib.error) as err:  # truncated or not a gzip file
                _say(f"{src} is corrupt ({err}); removed it, getting it again")
                src.unlink(missing_ok=True)
                return False
            size, md5 = FASHION_MNIST_IDX[dst.name]
            if tmp.stat().st_size != size or _md5(tmp) != md5:
                _say(f"{src} does not unpack to the known {dst.name} (size or md5 differ); removed it, "
                     "getting it again")
                src.unlink(missing_ok=True)
                return False
            tmp.replace(dst)
            return True
    finally:
        tmp.unlink(missing_ok=True)


def idx_problem(path: Path) -> str | None:
    """What is wrong with the unpacked IDX file `path` (None: nothing): size, header, and for labels the md5."""
    size, md5 = FASHION_MNIST_IDX[path.name]
    actual = path.stat().st_size
    if actual != size:
        return f"{actual:,} bytes instead of {size:,} (truncated?)"
    magic, dims = FASHION_MNIST_HEADERS[path.name]
    with open(path, "rb") as f:
        header = f.read(4 + 4 * len(dims))
    found = int.from_bytes(header[:4], "big")
    shape = tuple(int.from_bytes(header[4 + 4 * i:8 + 4 * i], "big") for i in range(len(dims)))
    if found != magic or shape != dims:
        return f"a bad IDX header (magic {found}, dimensions {shape}; expected {magic}, {dims})"
    if "labels" in path.name:  # small files: check every byte (labels changed in place, or out of 0..9)
        labels = path.read_bytes()[8:]
        if max(labels) > 9:
            return f"labels up to {max(labels)}, outside the 10 classes 0..9"
        if _md5(path) != md5:
            return "labels that differ from Fashion-MNIST's (md5 mismatch)"
    return None


def _remove_damaged(raw: Path) -> None:
    """Unpacked files that fail `idx_problem` are removed, to be made again from a copy (said on stderr);
    with no copy to make one from, a one-line error names it (the file is left as it is)."""
    for stem in FASHION_MNIST_IDX:
        path = raw / stem
        if not path.is_file():
            continue
        problem = idx_problem(path)
        if problem is None:
            continue
        sources = [p for p in (raw / f"{stem}.gz", DEBIAN_FASHION_MNIST_DIR / f"{stem}.gz") if p.is_file()]
        if not sources:
            raise SimKDLiteError(f"{path} is damaged ({problem}) and there is no copy to make it again from "
                                 f"({stem}.gz, or Debian's dataset-fashion-mnist package): delete it and run "
                                 "`simkd-lite data fetch fashion_mnist`")
        _say(f"{path} has {problem}; removed it, making it again from {sources[0]}")
        with writing(path, "removing"):
            path.unlink()


def ensure_fashion_mnist_files(root: str | Path = "data", download: bool = False) -> bool:
    """Make the IDX files torchvision reads exist in ``<root>/FashionMNIST/raw/``; True if they do.

    Tries, in order: already unpacked; .gz files in raw/; Debian's copies; (if ``download``)
    torchvision's download. torchvision reads the *unpacked* files, so .gz files are unpacked next
    to them, and each unpacked file is checked (size and md5) before it takes its final name.
    """
    raw = _raw_folder(Path(root))
    _remove_damaged(raw)
    for stem in FASHION_MNIST_FILES:
        packed, debian = raw / f"{stem}.gz", DEBIAN_FASHION_MNIST_DIR / f"{stem}.gz"
        for _attempt in range(2):  # a corrupt .gz in raw/ is removed and copied again once
            if (raw / stem).is_file():
                break
            if not packed.is_file() and debian.is_file():
                with writing(raw, "creating"):
                    raw.mkdir(parents=True, exist_ok=True)
                _copy(debian, packed)
            if not packed.is_file() or _gunzip(packed, raw / stem):
                break
    if all((raw / stem).is_file() for stem in FASHION_MNIST_FILES):
        return True
    if not download:
        return False
    try:  # downloads the four .gz files (md5-checked by torchvision) and unpacks them
        datasets.FashionMNIST(str(root), train=False, download=True)
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM):
            raise SimKDLiteError(describe_os_error(err, err.filename or raw)) from err
        return False
    except (RuntimeError, URLError):
        return False
    _remove_damaged(raw)
    return all((raw / stem).is_file() for stem in FASHION_MNIST_FILES)


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
