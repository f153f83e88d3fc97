"""What every dataset shares: its description, the registry, seeded subsets and the loaders.

A dataset is a function ``build(root, augment, download) -> (train, test, info)`` registered
with ``@register_dataset(name, locate=...)``; ``locate(root)`` says where its files live.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import torch
from torch.utils.data import Dataset, Subset
from torchvision import transforms

from simkd_lite.errors import SimKDLiteError


class DatasetNotFoundError(FileNotFoundError):
    """A dataset is not on disk (and was not, or could not be, downloaded). The message says how to get it."""


@dataclass(frozen=True)
class DatasetInfo:
    """What a model and a plot need to know about a dataset (sizes are those of the returned splits)."""
    name: str
    num_classes: int
    in_channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: list[str]
    train_size: int
    test_size: int
    crop_padding: int = 0  # the train augmentation's RandomCrop padding (0: no augmentation defined)
    source: str | None = None       # own images (imagefolder): the folder they were read from
    fingerprint: str | None = None  # own images: a hash of the files (names the runs made on them)
    split: str | None = None        # own images: how the test split was made (train/val, or held out)


@dataclass
class DatasetBundle:
    """Train and test sets (each yields (float tensor (C, H, W), int label)) plus their ``info``."""
    train: Dataset
    test: Dataset
    info: DatasetInfo


# name -> (build(root, augment, download) -> (train, test, info), locate(root) -> dict)
_REGISTRY: dict[str, tuple[Callable, Callable]] = {}


def register_dataset(name: str, locate: Callable[[Path], dict]):
    """Decorator: register ``build(root, augment, download) -> (train, test, info)`` under ``name``.

    ``locate(root)`` reports where the files live: {"present": bool, "path": str, "hint": str}.
    """
    def decorator(build: Callable) -> Callable:
        _REGISTRY[name] = (build, locate)
        return build
    return decorator


def find_clone(start: str | Path | None = None) -> Path | None:
    """The simkd_lite repository (a git clone or unpacked source) holding ``start`` (default: the working
    directory), or None: the first folder, walking up, with a ``pyproject.toml`` naming simkd_lite next to
    a ``simkd_lite/`` package."""
    here = Path(start if start is not None else Path.cwd()).resolve()
    for folder in (here, *here.parents):
        project = folder / "pyproject.toml"
        if (folder / "simkd_lite" / "__init__.py").is_file() and project.is_file() \
                and 'name = "simkd_lite"' in project.read_text(errors="replace"):
            return folder
    return None


def user_cache_dir() -> Path:
    """simkd_lite's per-user cache folder (platformdirs' choice: ``~/.cache/simkd_lite`` on Linux, or
    ``$XDG_CACHE_HOME/simkd_lite``; ``~/Library/Caches/simkd_lite`` on macOS)."""
    import platformdirs  # a dependency of jupyter_core, and ours

    return platformdirs.user_cache_path("simkd_lite")


def default_data_root() -> Path:
    """Where datasets live when no folder is given (``root=None``, a notebook's ``DATA_ROOT = None``).

    In order: ``$SIMKD_LITE_DATA``; the ``data/`` folder of the simkd_lite clone that holds the working
    directory, else of the clone the package was imported from (an editable install); else the per-user
    cache, ``user_cache_dir() / "data"`` (``~/.cache/simkd_lite/data`` on Linux): a notebook copied out of
    the repository, or a wheel-installed package, never writes above its own folder.
    """
    if os.environ.get("SIMKD_LITE_DATA"):
        return Path(os.environ["SIMKD_LITE_DATA"])
    clone = find_clone() or find_clone(Path(__file__).parent)
    return clone / "data" if clone is not None else user_cache_dir() / "data"


def _root(root: str | Path | None) -> Path:
    return default_data_root() if root is None else Path(root)


def list_datasets() -> list[str]:
    """Names accepted by ``load_dataset``, sorted."""
    return sorted(_REGISTRY)


def _lookup(name: str) -> tuple[str, Callable, Callable]:
    """(key, build, locate) for ``name`` ('Fashion-MNIST' -> 'fashion_mnist'); else ValueError with suggestions."""
    key = name.lower().replace("-", "_")
    if key not in _REGISTRY:
        close = difflib.get_close_matches(key, list_datasets(), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"Unknown dataset {name!r}.{hint} Available: {', '.join(list_datasets())}.")
    return (key, *_REGISTRY[key])


def seeded_subset(dataset: Dataset, size: int | None, seed: int, split: str = "train") -> Dataset:
    """A random ``Subset`` of ``size`` items, the same for the same seed; ``None`` keeps everything."""
    if size is None:
        return dataset
    if not 0 < size <= len(dataset):
        raise ValueError(f"{split}_subset={size} but the {split} set has {len(dataset)} items "
                         f"(choose 1..{len(dataset)}, or None for all).")
    generator = torch.Generator().manual_seed(seed)
    indices = torch.randperm(len(dataset), generator=generator)[:size].tolist()
    return Subset(dataset, indices)


def load_dataset(name: str, root: str | Path | None = None, train_subset: int | None = None,
                 test_subset: int | None = None, seed: int = 0, augment: bool = True,
                 download: bool | None = None) -> DatasetBundle:
    """Load a registered dataset as a ``DatasetBundle``.

    root: folder holding the datasets (relative paths are relative to the working directory);
        None: ``default_data_root()`` ($SIMKD_LITE_DATA, the clone's data/, else the per-user cache).
    train_subset / test_subset: keep a seeded random subset of that many items (None: all).
    augment: random train augmentation (the test set is never augmented).
    download: fetch missing files from the internet. None (the default) means no, like False:
        loading never touches the network unless you ask for it.
    """
    key, build, _ = _lookup(name)
    train, test, info = build(_root(root), augment, bool(download))
    for split, dataset in (("train", train), ("test", test)):
        check_labels(dataset, info, split)
    train = seeded_subset(train, train_subset, seed, "train")
    test = seeded_subset(test, test_subset, seed, "test")
    return DatasetBundle(train, test, replace(info, train_size=len(train), test_size=len(test)))


def check_labels(dataset: Dataset, info: DatasetInfo, split: str) -> None:
    """Every label must be a class of the data set, and there must be one per image: a damaged label file
    fails here in one line instead of scoring 0% (labels 255) without a word. Datasets that keep their
    labels elsewhere than in `.targets` are not checked."""
    targets = getattr(dataset, "targets", None)
    if targets is None:
        return
    labels = torch.as_tensor(targets)
    where = getattr(dataset, "root", None) or info.name
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= info.num_classes):
        raise SimKDLiteError(f"the {info.name} {split} labels (in {where}) run from {int(labels.min())} to "
                             f"{int(labels.max())}, outside the {info.num_classes} classes 0..{info.num_classes - 1}: "
                             "the label file is damaged; remove it and fetch the data set again")
    images = getattr(dataset, "data", None)
    if images is not None and len(images) != len(labels):
        raise SimKDLiteError(f"the {info.name} {split} set (in {where}) has {len(images)} images but {len(labels)} "
                             "labels: a file is damaged; remove it and fetch the data set again")


def locate_dataset(name: str, root: str | Path | None = None) -> dict:
    """Where ``name`` lives under ``root`` (None: ``default_data_root()``):
    {"name", "present": bool, "path": str, "hint": how to get it}."""
    key, _, locate = _lookup(name)
    return {"name": key, **locate(_root(root))}


def fetch_dataset(name: str, root: str | Path | None = None) -> Path:
    """Make ``name`` present under ``root`` (None: ``default_data_root()``; offline copies first, then a
    download); return its folder.

    Raises ``DatasetNotFoundError`` (with the how-to-get-it hint) when neither works.
    """
    _, build, locate = _lookup(name)
    root = _root(root)
    build(root, False, True)
    return Path(locate(root)["path"])


def image_transforms(mean, std, size: int, padding: int, augment: bool):
    """(train, test) transforms: PIL image -> normalised float tensor (C, H, W).

    With ``augment`` the train transform first pads by ``padding``, crops back to ``size`` at a
    random place and flips left-right half the time (the standard CIFAR recipe).
    """
    to_tensor = [transforms.ToTensor(), transforms.Normalize(mean, std)]
    if not augment:
        return transforms.Compose(to_tensor), transforms.Compose(to_tensor)
    random = [transforms.RandomCrop(size, padding=padding), transforms.RandomHorizontalFlip()]
    return transforms.Compose(random + to_tensor), transforms.Compose(to_tensor)
