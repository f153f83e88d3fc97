"""Data written on the fly: a tiny fake CIFAR-10/100 in the exact official file layout, to run the CIFAR code
paths offline, and an image folder of PNG files (`write_image_folder`) for the own-data path.

    write_cifar_fixture("/tmp/fake", "cifar100", n_train=200, n_test=100)
    bundle = load_dataset("cifar100", root="/tmp/fake")   # same code path as the real data

The official files are Python 2 pickles of dicts: b'data' uint8 (N, 3072) (1024 red, then green,
then blue values per image, rows top to bottom), labels as lists of ints, names as byte strings.
"""

from __future__ import annotations

import io
import pickle
import struct
from pathlib import Path

import numpy as np

from simkd_lite.data.cifar import CIFAR_CLASSES

CIFAR10_NAMES = "airplane automobile bird cat deer dog frog horse ship truck".split()
CIFAR100_NAMES = """apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus
butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup
dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion
lizard lobster man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear
pickup_truck pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark
shrew skunk skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone
television tiger tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm""".split()


class _Py2Pickler(pickle._Pickler):
    """Pickles ``bytes`` as Python 2 ``str``, as the official CIFAR files (written by Python 2) do.

    Such strings load as b'data' with ``encoding='bytes'`` (the CIFAR website's recipe) and as
    'data' with ``encoding='latin1'`` (torchvision's). Python 3 bytes would only give b'data',
    and torchvision would not find its 'data' key. (``pickle._Pickler`` is the stdlib's pure-Python
    pickler; giving it a new ``dispatch`` entry is how one changes the way one type is written.)
    """
    dispatch = dict(pickle._Pickler.dispatch)  # our own copy: don't change the stdlib pickler

    def _save_py2_str(self, obj: bytes) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str


def _dump(obj: dict, path: Path) -> None:
    buffer = io.BytesIO()
    _Py2Pickler(buffer, protocol=2).dump(obj)
    path.write_bytes(buffer.getvalue())


def class_patterns(num_classes: int, rng: np.random.Generator) -> np.ndarray:
    """(num_classes, 3, 32, 32) float: one blocky colour pattern per class (4x4 blocks of 8x8 pixels)."""
    return rng.uniform(0, 255, size=(num_classes, 3, 4, 4)).repeat(8, axis=2).repeat(8, axis=3)


def _fake_images(labels: np.ndarray, patterns: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8 (N, 3072) images: the class's pattern plus fresh noise per image.

    Train and test images of a class share its pattern (only the noise differs), so what a model
    learns on the train split carries over to the test split: a working test path scores far
    above chance, a broken one does not.
    """
    noise = rng.uniform(0, 255, size=(len(labels), 3, 32, 32))
    images = 0.7 * patterns[labels] + 0.3 * noise  # (N, 3, 32, 32): channels first, like the real rows
    return images.round().astype(np.uint8).reshape(len(labels), 3072)


def _split(n: int, names: list[str], patterns: np.ndarray, rng: np.random.Generator):
    """(data uint8 (n, 3072), labels list[int], filenames list[bytes]) for ``n`` shuffled images."""
    labels = rng.permutation(np.arange(n) % len(names))  # every class appears once n >= #classes
    files = [f"fixture_{names[y]}_{i:05d}.png".encode() for i, y in enumerate(labels)]
    return _fake_images(labels, patterns, rng), labels.tolist(), files


def _write_cifar100(folder: Path, n_train: int, n_test: int, rng: np.random.Generator) -> None:
    """cifar-100-python/{train, test, meta}. Coarse labels are placeholders (fine // 5)."""
    patterns = class_patterns(len(CIFAR100_NAMES), rng)  # shared by both splits
    for part, n in (("train", n_train), ("test", n_test)):
        data, fine, files = _split(n, CIFAR100_NAMES, patterns, rng)
        _dump({b"filenames": files, b"batch_label": f"{part}ing batch 1 of 1".encode(),
               b"fine_labels": fine, b"coarse_labels": [y // 5 for y in fine], b"data": data}, folder / part)
    _dump({b"fine_label_names": [n.encode() for n in CIFAR100_NAMES],
           b"coarse_label_names": [f"superclass_{i:02d}".encode() for i in range(20)]}, folder / "meta")


def _write_cifar10(folder: Path, n_train: int, n_test: int, rng: np.random.Generator) -> None:
    """cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}: the train set in five batches."""
    patterns = class_patterns(len(CIFAR10_NAMES), rng)  # shared by both splits
    data, labels, files = _split(n_train, CIFAR10_NAMES, patterns, rng)
    for i, rows in enumerate(np.array_split(np.arange(n_train), 5), start=1):
        _dump({b"batch_label": f"training batch {i} of 5".encode(), b"labels": [labels[j] for j in rows],
               b"data": data[rows], b"filenames": [files[j] for j in rows]}, folder / f"data_batch_{i}")
    data, labels, files = _split(n_test, CIFAR10_NAMES, patterns, rng)
    _dump({b"batch_label": b"testing batch 1 of 1", b"labels": labels, b"data": data, b"filenames": files},
          folder / "test_batch")
    _dump({b"num_cases_per_batch": -(-n_train // 5), b"label_names": [n.encode() for n in CIFAR10_NAMES],
           b"num_vis": 3072}, folder / "batches.meta")


def write_cifar_fixture(root: str | Path, name: str = "cifar100", n_train: int = 200,
                        n_test: int = 100, seed: int = 0) -> Path:
    """Write a tiny fake CIFAR-10/100 in the official layout under ``root``; return its folder.

    ``load_dataset(name, root=root)`` then reads it exactly like the real data. Images are
    synthetic (uint8, class-coloured blocks plus noise; train and test share each class's
    pattern, so the test split is learnable); class names are the real ones.
    Deterministic for a given ``seed``. Overwrites an existing fixture in the same place.
    """
    if name not in CIFAR_CLASSES:
        raise ValueError(f"write_cifar_fixture: name must be 'cifar10' or 'cifar100', not {name!r}")
    if n_train < 5 or n_test < 1:
        raise ValueError("write_cifar_fixture needs n_train >= 5 (CIFAR-10 has five train batches) and n_test >= 1")
    folder = Path(root) / CIFAR_CLASSES[name].base_folder
    folder.mkdir(parents=True, exist_ok=True)
    writer = _write_cifar10 if name == "cifar10" else _write_cifar100
    writer(folder, n_train, n_test, np.random.default_rng(seed))
    return folder


# ------------------------------------------------------------------------------ an image folder (own data)
FOLDER_RECIPE = ".simkd_image_folder.json"  # a hidden file (scan_folder skips it): what wrote the folder


def _source_images(source: str, data_root: str | Path | None) -> tuple[dict, list[str]]:
    """{"train": (uint8 (N, H, W), labels (N,)), "test": (...)} and the class names of `source`."""
    if source == "fashion_mnist":
        from simkd_lite.data.core import load_dataset

        bundle = load_dataset("fashion_mnist", data_root, augment=False)
        splits = {name: (np.asarray(ds.data), np.asarray(ds.targets)) for name, ds in
                  (("train", bundle.train), ("test", bundle.test))}
        return splits, [name.replace("/", "-") for name in bundle.info.class_names]  # "T-shirt/top": no folder
    if source == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = np.round(digits.images * 255 / 16).astype(np.uint8)
        odd = np.arange(len(images)) % 5 == 4  # a fixed 80/20 split of the 1,797 digits
        return ({"train": (images[~odd], digits.target[~odd]), "test": (images[odd], digits.target[odd])},
                [str(d) for d in range(10)])
    raise ValueError(f"write_image_folder: source must be 'fashion_mnist' or 'digits', not {source!r}")


def write_image_folder(root: str | Path, source: str = "digits", per_class: int = 50, test_per_class: int | None = None,
                       *, classes: int | None = None, size: int | None = None, split: bool = True,
                       data_root: str | Path | None = None) -> Path:
    """Write PNG files of `source` ("digits" or "fashion_mnist") in the ImageFolder layout; return `root`.

    split=True: ``root/train/<class>/*.png`` (`per_class` each) and ``root/val/<class>/*.png`` (`test_per_class`
    each, default a quarter of `per_class`), taken from the source's own train and test images; split=False:
    ``root/<class>/*.png`` only (the data set then holds 20% out). `classes`: the first N classes only;
    `size`: resize (digits are 8x8, Fashion-MNIST 28x28). Images are the first of each class, so the folder
    is the same every time; a folder already written with the same arguments is reused as it is.
    """
    import json

    from PIL import Image

    root = Path(root)
    test_per_class = test_per_class if test_per_class is not None else max(1, per_class // 4)
    recipe = {"source": source, "per_class": per_class, "test_per_class": test_per_class, "classes": classes,
              "size": size, "split": split}
    marker = root / FOLDER_RECIPE
    if marker.is_file() and json.loads(marker.read_text()) == recipe:
        return root
    splits, names = _source_images(source, data_root)
    names = names[:classes] if classes else names
    plan = [("train", per_class, root / "train" if split else root)] + ([("test", test_per_class, root / "val")]
                                                                       if split else [])
    for part, count, folder in plan:
        images, labels = splits[part]
        for label, name in enumerate(names):
            chosen = np.flatnonzero(labels == label)[:count]
            if len(chosen) < count:
                raise ValueError(f"write_image_folder: {source} has {len(chosen)} {part} images of class {name}, "
                                 f"fewer than the {count} asked for")
            (folder / name).mkdir(parents=True, exist_ok=True)
            for index in chosen:
                image = Image.fromarray(images[index])
                if size:
                    image = image.resize((size, size), Image.BILINEAR)
                image.save(folder / name / f"{part}_{index:05d}.png")
    marker.write_text(json.dumps(recipe) + "\n")
    return root
