"""Procedural dSprites: the exact factor grid, npz indexing, determinism, no clipping, distinct images."""

import re

import numpy as np
import pytest

from combax.data.dsprites import FACTOR_SIZES, FACTOR_VALUES, N_IMAGES, dsprites


@pytest.fixture(scope="module")
def ds():
    return dsprites(64)


def test_grid_size_and_values(ds):
    assert len(ds) == N_IMAGES == 737_280 == int(np.prod(FACTOR_SIZES))
    assert FACTOR_SIZES == (1, 3, 6, 40, 32, 32)
    np.testing.assert_allclose(FACTOR_VALUES[2], [0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    assert FACTOR_VALUES[3][0] == 0.0 and FACTOR_VALUES[3][-1] == 2 * np.pi
    np.testing.assert_allclose(np.diff(FACTOR_VALUES[3]), 2 * np.pi / 39)
    np.testing.assert_allclose(np.diff(FACTOR_VALUES[4]), 1 / 31)


def test_npz_indexing_roundtrip(ds):
    idx = np.arange(N_IMAGES)
    cls = ds.factor_classes(idx)
    np.testing.assert_array_equal(ds.index_of(cls), idx)
    # npz order: posY fastest, then posX, orientation, scale, shape
    assert cls[1].tolist() == [0, 0, 0, 0, 0, 1]
    assert cls[32].tolist() == [0, 0, 0, 0, 1, 0]
    assert cls[1024].tolist() == [0, 0, 0, 1, 0, 0]
    assert cls[245_760].tolist() == [0, 1, 0, 0, 0, 0]
    vals = ds.factor_values([N_IMAGES - 1])
    np.testing.assert_allclose(vals[0], [1, 3, 1.0, 2 * np.pi, 1.0, 1.0])


def test_deterministic_and_binary(ds):
    idx = np.random.default_rng(0).integers(0, N_IMAGES, 500)
    a, b = ds.images(idx), dsprites(64).images(idx)
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.uint8 and set(np.unique(a)) <= {0, 1}
    assert (a.reshape(500, -1).sum(axis=1) > 0).all()
    # batches are a function of the seed
    (x1, c1), (x2, c2) = next(ds.batches(8, seed=3)), next(ds.batches(8, seed=3))
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(c1, c2)
    np.testing.assert_array_equal(ds.images(ds.index_of(c1)), x1)


def test_orientation_endpoints_are_the_same_image(ds):
    cls = ds.factor_classes(np.arange(0, N_IMAGES, 1024 * 7))
    first, last = cls.copy(), cls.copy()
    first[:, 3], last[:, 3] = 0, 39
    np.testing.assert_array_equal(ds.render(first), ds.render(last))


def test_nothing_clipped(ds):
    """Largest sprites at the extreme positions, every shape and orientation: the frame's border stays empty and the
    sprite keeps its pixel count (within rasterisation noise) when moved from the centre to a corner."""
    rows = []
    for shape in range(3):
        for orient in range(40):
            for px, py in [(0, 0), (0, 31), (31, 0), (31, 31), (15, 16)]:
                rows.append([0, shape, 5, orient, px, py])
    im = ds.render(np.array(rows))
    border = im[:, 0, :].sum() + im[:, -1, :].sum() + im[:, :, 0].sum() + im[:, :, -1].sum()
    assert border == 0
    area = im.reshape(3, 40, 5, -1).sum(axis=-1, dtype=np.int64)
    assert (np.abs(area[:, :, :4] - area[:, :, 4:]) <= 0.15 * area[:, :, 4:]).all()


def test_pixel_geometry_at_64(ds):
    """A square at scale 1, orientation 0, centre position 16 + 32 * 15/31: half-side 6.4 px -> about 12-13 px a side."""
    im = ds.render(np.array([[0, 0, 5, 0, 15, 15]]))[0]
    rows, cols = np.nonzero(im)
    assert 12 <= rows.max() - rows.min() + 1 <= 14 and 12 <= cols.max() - cols.min() + 1 <= 14
    assert abs(cols.mean() - (16 + 32 * 15 / 31)) < 1.0 and abs(rows.mean() - (16 + 32 * 15 / 31)) < 1.0


@pytest.mark.slow
def test_images_differing_in_shape_or_position_are_distinct(ds):
    """Over the full grid: every group of identical images shares its shape and position. (Orientation and, for the
    smallest ellipses, scale can coincide after binary rasterisation; the docstring documents it.)"""
    keys = []
    for start in range(0, N_IMAGES, 65_536):
        im = ds.images(np.arange(start, min(start + 65_536, N_IMAGES)))
        keys.append(np.packbits(im.reshape(len(im), -1), axis=1))
    k = np.concatenate(keys)
    _, inv = np.unique(k.view(np.dtype((np.void, k.shape[1]))).ravel(), return_inverse=True)
    cls = ds.factor_classes(np.arange(N_IMAGES))
    for f in (1, 4, 5):  # shape, posX, posY: constant within every group of equal images
        lo = np.full(inv.max() + 1, 99)
        hi = np.full(inv.max() + 1, -1)
        np.minimum.at(lo, inv, cls[:, f])
        np.maximum.at(hi, inv, cls[:, f])
        assert (lo == hi).all(), f"factor {f} differs inside a group of identical images"
    n_distinct = inv.max() + 1
    assert n_distinct > 0.9 * N_IMAGES


def test_downscaled_is_binary_and_centred():
    small = dsprites(32)
    im = small.render(np.array([[0, 2, 5, 10, 0, 31]]))
    assert im.shape == (1, 32, 32) and set(np.unique(im)) == {0, 1}


@pytest.mark.parametrize(
    ("call", "msg"),
    [
        (lambda: dsprites(4), "`size` must be an integer in [8, 64]; got 4"),
        (lambda: dsprites().images([N_IMAGES]), "`index` must lie in [0, 737280); got values in [737280, 737280]"),
        (
            lambda: dsprites().render(np.zeros((2, 5), int)),
            "`classes` must be an (n, 6) integer array; got int64 (2, 5)",
        ),
        (lambda: dsprites().render(np.array([[0, 3, 0, 0, 0, 0]])), "`classes` out of range"),
    ],
)
def test_errors(call, msg):
    with pytest.raises(ValueError, match=re.escape(msg)):
        call()
