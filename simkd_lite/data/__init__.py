"""Datasets for simkd_lite: one registry, one loader, offline first.

    bundle = load_dataset("fashion_mnist", train_subset=2000, seed=0)
    image, label = bundle.train[0]          # image: float tensor (C, H, W), normalised; label: int
    bundle.info.num_classes                 # 10

Layout (read in this order):
    core.py           DatasetInfo, DatasetBundle, the registry, load_dataset / locate_dataset / fetch_dataset
    digits.py         scikit-learn's 8x8 digits (bundled, instant)
    fashion_mnist.py  Fashion-MNIST, copied offline from Debian's dataset-fashion-mnist package when present
    cifar.py          CIFAR-10 / CIFAR-100 (the SimKD paper's benchmark)
    image_folder.py   your own images: ``imagefolder``, a folder with one sub-folder per class (--data-dir)
    fixtures.py       write_cifar_fixture: a tiny fake CIFAR in the official file layout, for offline demos;
                      write_image_folder: PNG files in the ImageFolder layout, from digits or Fashion-MNIST

A new dataset is one function decorated with ``@register_dataset`` in a new file imported below.
With no folder given, datasets live in ``default_data_root()``: ``$SIMKD_LITE_DATA``, else the clone's
``data/``, else the per-user cache (``~/.cache/simkd_lite/data`` on Linux).
Nothing touches the network unless asked (``download=True`` or ``fetch_dataset``); a missing
dataset raises ``DatasetNotFoundError`` saying exactly how to get it.
"""

from simkd_lite.data.core import (DatasetBundle, DatasetInfo, DatasetNotFoundError, default_data_root, fetch_dataset,
                                  find_clone, list_datasets, load_dataset, locate_dataset, register_dataset,
                                  user_cache_dir)
from simkd_lite.data.digits import TensorImageDataset
from simkd_lite.data.fashion_mnist import ensure_fashion_mnist_files
from simkd_lite.data.cifar import CIFAR10Local, CIFAR100Local
from simkd_lite.data.image_folder import FolderLayout, load_image_folder, scan_folder
from simkd_lite.data.fixtures import write_cifar_fixture, write_image_folder

__all__ = [
    "DatasetInfo", "DatasetBundle", "DatasetNotFoundError", "TensorImageDataset",
    "register_dataset", "list_datasets", "default_data_root", "find_clone", "user_cache_dir", "load_dataset", "locate_dataset", "fetch_dataset",
    "ensure_fashion_mnist_files", "write_cifar_fixture", "write_image_folder", "CIFAR10Local", "CIFAR100Local",
    "FolderLayout", "scan_folder", "load_image_folder",
]
