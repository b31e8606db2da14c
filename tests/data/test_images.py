import numpy as np
import pytest

from combax.data import digits, mnist5k, pad_to, stratified_split


@pytest.mark.parametrize(
    ("loader", "shape", "n_per_class"),
    [(mnist5k, (5000, 28, 28, 1), 500), (digits, (1797, 8, 8, 1), None)],
)
def test_loader_shapes_ranges_and_classes(loader, shape, n_per_class):
    ds = loader()
    assert ds.images.shape == shape
    assert ds.images.dtype == np.float32
    assert ds.images.min() == 0.0 and ds.images.max() == 1.0
    assert ds.labels.dtype == np.int64 and ds.labels.shape == (shape[0],)
    counts = np.bincount(ds.labels)
    assert counts.size == 10 and ds.n_classes == 10
    if n_per_class is not None:
        assert (counts == n_per_class).all()
    else:
        assert counts.min() >= 170


def test_split_is_stratified_disjoint_and_complete():
    labels = mnist5k().labels
    train, test = stratified_split(labels, 0.2, seed=3)
    assert np.intersect1d(train, test).size == 0
    assert np.union1d(train, test).size == labels.size
    assert (np.bincount(labels[test]) == 100).all()


def test_split_is_deterministic_and_seed_dependent():
    labels = digits().labels
    a = stratified_split(labels, 0.25, seed=0)
    b = stratified_split(labels, 0.25, seed=0)
    c = stratified_split(labels, 0.25, seed=1)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[1], c[1])


def test_split_keeps_both_sides_of_tiny_classes():
    train, test = stratified_split(np.array([0, 0, 1, 1, 1]), 0.1)
    assert set(np.array([0, 0, 1, 1, 1])[test]) == {0, 1}
    assert train.size == 3


@pytest.mark.parametrize(
    ("labels", "fraction", "match"),
    [(np.zeros((2, 2)), 0.2, "`labels` must be one-dimensional"), (np.zeros(4), 1.0, "`test_fraction`")],
)
def test_split_rejects_bad_input(labels, fraction, match):
    with pytest.raises(ValueError, match=match):
        stratified_split(labels, fraction)


def test_pad_to_centres_the_image():
    ds = pad_to(mnist5k().subset(np.arange(3)), 32)
    assert ds.images.shape == (3, 32, 32, 1)
    assert ds.images[:, :2].sum() == 0 and ds.images[:, -2:].sum() == 0
    assert np.allclose(ds.images[:, 2:30, 2:30], mnist5k().images[:3])
    with pytest.raises(ValueError, match="`size` must be at least"):
        pad_to(ds, 16)
