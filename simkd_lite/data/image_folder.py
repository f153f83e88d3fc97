"""Your own images: a folder in torchvision's ImageFolder layout, as a data set named ``imagefolder``.

    load_dataset("imagefolder", root="my_images")      # root IS the folder (not a folder of data sets)
    simkd-lite train-teacher --data-dir my_images ...   # the CLI's spelling

Layouts (class = sub-folder name, sorted as torchvision.datasets.ImageFolder sorts them):

    my_images/train/<class>/*.png   +  my_images/val/<class>/*.png   (``test/`` is accepted for ``val/``)
    my_images/<class>/*.png          ->  a fixed, stratified 20% held out as the test split (seed 0:
                                         the same folder always gives the same split, whatever the run's seed)

Everything a model needs is computed from the *training* images: the image size (the most common one;
other images are resized to it, shorter side first, then centre-cropped to a square), the channels (1 when
every image is grayscale, else 3: RGB), the classes and the per-channel mean and std. They land in
``DatasetInfo`` and so in every ``config.json`` and checkpoint (``asdict(info)``).

All images are decoded once into uint8 arrays (``.data`` (N, H, W) or (N, H, W, 3), ``.targets``), like
torchvision's MNIST and CIFAR, so the training engine's fast paths (one tensor per split, images on the
device) work unchanged. Bad input fails here in one line, before anything is written: a missing folder, an
empty class folder, a file that is not an image or cannot be decoded (named), fewer than two classes,
different classes in ``train/`` and ``val/``. Hidden files (``.DS_Store``, ``._x``) are skipped.
"""
from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision.datasets.folder import IMG_EXTENSIONS

from simkd_lite.data.core import DatasetInfo, image_transforms, register_dataset
from simkd_lite.errors import SimKDLiteError

NAME = "imagefolder"
HELD_OUT = 0.2          # the flat layout's test share
TEST_FOLDERS = ("val", "test")


@dataclass(frozen=True)
class FolderLayout:
    """What is where: class names (sorted) and, per split, the (file, label) pairs."""

    root: Path
    classes: tuple[str, ...]
    train: tuple[tuple[Path, int], ...]
    test: tuple[tuple[Path, int], ...]
    split: str  # "train/val", "train/test" or "held out 20% (seed 0)"

    def fingerprint(self) -> str:
        """A short hash of the classes and every file's relative path and size: it names runs made on this
        folder (another folder, or changed files, get other run folders and another teacher cache)."""
        digest = hashlib.sha256()
        for split, items in (("train", self.train), ("test", self.test)):
            for path, label in items:
                digest.update(f"{split}|{path.relative_to(self.root)}|{path.stat().st_size}|{label}\n".encode())
        return digest.hexdigest()[:12]


def _visible(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def _class_files(folder: Path) -> dict[str, list[Path]]:
    """{class name: its image files} of one split folder; refuses empty classes and non-image files."""
    classes = {}
    for sub in _visible(folder):
        if not sub.is_dir():
            raise SimKDLiteError(f"{sub} is a file directly in {folder}: the ImageFolder layout wants one sub-folder "
                                 "per class (folder/<class>/<image>), move it into a class folder or remove it")
        files = [p for p in sub.rglob("*") if p.is_file() and not any(part.startswith(".") for part in
                                                                        p.relative_to(sub).parts)]
        for p in files:
            if p.suffix.lower() not in IMG_EXTENSIONS:
                raise SimKDLiteError(f"{p} is not an image ({p.suffix or 'no extension'}; images end in "
                                     f"{', '.join(IMG_EXTENSIONS)}): remove it from the class folder")
        if not files:
            raise SimKDLiteError(f"the class folder {sub} holds no images: add images or remove the folder")
        classes[sub.name] = sorted(files)
    return classes


def _labelled(classes: dict[str, list[Path]], names: tuple[str, ...]) -> tuple[tuple[Path, int], ...]:
    return tuple((path, names.index(name)) for name in names for path in classes[name])


def _held_out_split(classes: dict[str, list[Path]]) -> tuple[list, list]:
    """Every class's files in a fixed shuffled order (seed 0); its last 20% (at least one) are the test split."""
    rng = np.random.default_rng(0)
    train, test = {}, {}
    for name, files in classes.items():
        if len(files) < 2:
            raise SimKDLiteError(f"the class folder {files[0].parent} holds one image: with no train/ and val/ "
                                 "folders 20% of each class is held out for testing, so each class needs at least 2")
        order = rng.permutation(len(files))
        cut = len(files) - max(1, round(HELD_OUT * len(files)))
        train[name] = [files[i] for i in sorted(order[:cut])]
        test[name] = [files[i] for i in sorted(order[cut:])]
    return train, test


def scan_folder(root: str | Path) -> FolderLayout:
    """The layout of an image folder, checked (no image is decoded here: see `load_image_folder`)."""
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise SimKDLiteError(f"--data-dir {root}: no such folder (it should hold one sub-folder per class, "
                             "or train/ and val/ folders that do)")
    test_dir = next((root / name for name in TEST_FOLDERS if (root / name).is_dir()), None)
    if (root / "train").is_dir():
        train = _class_files(root / "train")
        if test_dir is not None:
            test = _class_files(test_dir)
            if set(train) != set(test):
                only_train, only_test = sorted(set(train) - set(test)), sorted(set(test) - set(train))
                raise SimKDLiteError(f"{root / 'train'} and {test_dir} hold different classes (only in train/: "
                                     f"{', '.join(only_train) or 'none'}; only in {test_dir.name}/: "
                                     f"{', '.join(only_test) or 'none'}): both need the same class folders")
            split = f"train/{test_dir.name}"
        else:
            train, test = _held_out_split(train)
            split = "train/ with 20% held out (seed 0)"
    else:
        train, test = _held_out_split(_class_files(root))
        split = "held out 20% (seed 0)"
    names = tuple(sorted(train))
    if len(names) < 2:
        raise SimKDLiteError(f"{root} holds {len(names)} class folder{'s' if len(names) != 1 else ''} "
                             f"({', '.join(names) or 'none'}): classifying needs at least 2 (one sub-folder per class)")
    return FolderLayout(root, names, _labelled(train, names), _labelled(test, names), split)


class FolderImages(Dataset):
    """Decoded images of one split: ``data`` uint8 (N, H, W) or (N, H, W, 3), ``targets`` list of ints;
    yields (transform(PIL image), label) like torchvision's datasets."""

    def __init__(self, data: np.ndarray, targets: list[int], classes: tuple[str, ...], root: Path, transform=None):
        self.data, self.targets, self.classes, self.root, self.transform = data, targets, list(classes), str(root), transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        image = Image.fromarray(self.data[index])
        return (self.transform(image) if self.transform is not None else image), self.targets[index]


def _open(path: Path) -> Image.Image:
    try:
        with Image.open(path) as image:
            image.load()
            return image
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise SimKDLiteError(f"{path} cannot be read as an image ({type(err).__name__}: {err}): replace or remove "
                             "the file") from None


def _square(image: Image.Image, size: int, mode: str) -> np.ndarray:
    """The image in `mode` at size x size: unchanged when it already is, else shorter side resized, centre crop."""
    image = image.convert(mode)
    if image.size != (size, size):
        w, h = image.size
        scale = size / min(w, h)
        image = image.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BILINEAR)
        w, h = image.size
        left, top = (w - size) // 2, (h - size) // 2
        image = image.crop((left, top, left + size, top + size))
    return np.asarray(image, dtype=np.uint8)


@lru_cache(maxsize=4)  # keyed by the fingerprint: a changed folder is decoded again
def _decoded(root: Path, fingerprint: str) -> tuple[FolderLayout, np.ndarray, np.ndarray, int, str]:
    layout = scan_folder(root)
    train_images = [_open(p) for p, _ in layout.train]
    test_images = [_open(p) for p, _ in layout.test]
    mode = "L" if all(im.mode in ("L", "1", "I;16", "I") for im in train_images + test_images) else "RGB"
    (w, h), _ = Counter(im.size for im in train_images).most_common(1)[0]
    size = min(w, h)
    train = np.stack([_square(im, size, mode) for im in train_images])
    test = np.stack([_square(im, size, mode) for im in test_images])
    return layout, train, test, size, mode


def load_image_folder(root: str | Path, augment: bool = False):
    """(train, test, info) of an image folder; the decoded arrays are cached per folder content."""
    layout = scan_folder(root)
    layout, train_data, test_data, size, mode = _decoded(layout.root, layout.fingerprint())
    pixels = train_data.reshape(len(train_data), size * size, -1) / 255.0   # (N, H*W, C)
    mean = tuple(round(float(v), 4) for v in pixels.mean(axis=(0, 1)))
    std = tuple(round(max(float(v), 1e-3), 4) for v in pixels.std(axis=(0, 1)))  # a constant channel: no / 0
    padding = max(1, size // 8) if augment else 0  # CIFAR's 4 px at 32 px, scaled
    train_tf, test_tf = image_transforms(mean, std, size, padding, augment)
    labels = ([label for _, label in layout.train], [label for _, label in layout.test])
    train = FolderImages(train_data, labels[0], layout.classes, layout.root, train_tf)
    test = FolderImages(test_data, labels[1], layout.classes, layout.root, test_tf)
    info = DatasetInfo(NAME, len(layout.classes), 1 if mode == "L" else 3, size, mean, std, list(layout.classes),
                       len(train), len(test), crop_padding=padding, source=str(layout.root),
                       fingerprint=layout.fingerprint(), split=layout.split)
    return train, test, info


def _locate(root: Path) -> dict:
    present = Path(root).is_dir()
    return {"present": present, "path": str(root),
            "hint": "Your own images: pass the folder (one sub-folder per class, optionally under train/ and val/) "
                    "as --data-dir DIR (Python: Experiment.resolve(data_dir=DIR))."}


@register_dataset(NAME, locate=_locate)
def _image_folder(root: Path, augment: bool, download: bool):
    """``root`` is the image folder itself; ``download`` has nothing to fetch."""
    return load_image_folder(root, augment)
