"""scikit-learn's handwritten digits: 1,797 grayscale 8x8 images, bundled, so always available."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from simkd_lite.data.core import DatasetInfo, register_dataset

# Computed once over the 1,437 train images scaled to [0, 1]: mean 0.30538, std 0.37612.
DIGITS_MEAN, DIGITS_STD = (0.3054,), (0.3761,)


class TensorImageDataset(Dataset):
    """Images already in memory: ``images`` float (N, C, H, W), ``labels`` int (N,) -> (image, int label)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        assert len(images) == len(labels), "one label per image"
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        return self.images[index], int(self.labels[index])


def _locate_digits(root: Path) -> dict:
    import sklearn.datasets
    bundled = Path(sklearn.datasets.__file__).parent / "data"
    return {"present": True, "path": str(bundled), "hint": "Bundled with scikit-learn: nothing to download."}


@register_dataset("digits", locate=_locate_digits)
def _digits(root: Path, augment: bool, download: bool):
    """A fixed 1,437 / 360 split, stratified by class with its own seed (0): ``seed`` never changes it.

    ``augment`` is ignored (cropping or flipping an 8x8 digit destroys it); ``root`` is unused.
    """
    from sklearn.datasets import load_digits  # imported here: scikit-learn is slow to import
    from sklearn.model_selection import train_test_split

    digits = load_digits()  # images (1797, 8, 8) with values 0..16
    images = torch.tensor(digits.images / 16.0, dtype=torch.float32).unsqueeze(1)  # (1797, 1, 8, 8) in [0, 1]
    images = (images - DIGITS_MEAN[0]) / DIGITS_STD[0]
    labels = torch.tensor(digits.target, dtype=torch.long)
    train_idx, test_idx = train_test_split(np.arange(len(labels)), test_size=360,
                                           stratify=digits.target, random_state=0)
    train = TensorImageDataset(images[train_idx], labels[train_idx])
    test = TensorImageDataset(images[test_idx], labels[test_idx])
    info = DatasetInfo("digits", 10, 1, 8, DIGITS_MEAN, DIGITS_STD, [str(d) for d in range(10)],
                       len(train), len(test))
    return train, test, info
