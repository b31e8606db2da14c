"""Procedural dSprites: the exact factor grid of DeepMind's data set, rendered on demand (nothing is downloaded).

The grid (``specs/cascade_vae.md`` §6) is colour {1} x shape {square, ellipse, heart} x scale linspace(0.5, 1, 6)
x orientation linspace(0, 2 pi, 40) x posX linspace(0, 1, 32) x posY linspace(0, 1, 32) = 737,280 binary images.
Images are indexed in the npz storage order (row-major over the factors, posY fastest) and rendered lazily, by index
or in batches, by a numba scanline polygon fill; the whole set (2.9 GB at 64x64) is only built when asked.
"""

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numba import njit

FACTOR_NAMES = ("color", "shape", "scale", "orientation", "posX", "posY")
FACTOR_SIZES = (1, 3, 6, 40, 32, 32)
N_IMAGES = 737_280
#: index = sum_f class_f * FACTOR_BASES[f]  (the npz order: posY fastest)
FACTOR_BASES = (737_280, 245_760, 40_960, 1_024, 32, 1)
SHAPES = ("square", "ellipse", "heart")
_N_OUTLINE = 96  # vertices of the ellipse and heart polygons


def _factor_value_table() -> tuple[np.ndarray, ...]:
    return (
        np.array([1.0]),
        np.array([1.0, 2.0, 3.0]),
        np.linspace(0.5, 1.0, 6),
        np.linspace(0.0, 2.0 * np.pi, 40),
        np.linspace(0.0, 1.0, 32),
        np.linspace(0.0, 1.0, 32),
    )


FACTOR_VALUES = _factor_value_table()


def _unit_outlines() -> tuple[np.ndarray, np.ndarray]:
    """(3, V, 2) float64 outline vertices (x, y) of the unit shapes, padded, and (3,) vertex counts.

    Square: half-side 1. Ellipse: semi-axes (1, 0.5). Heart: the parametric curve
    (16 sin^3 t, 13 cos t - 5 cos 2t - 2 cos 3t - cos 4t), bounding box centred and scaled to half-extent 1, with the
    point downwards in image coordinates flipped so the lobes are at the top (y grows downwards in an image).
    """
    v = _N_OUTLINE
    out = np.zeros((3, v, 2))
    out[0, :4] = [[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]]
    t = np.linspace(0.0, 2.0 * np.pi, v, endpoint=False)
    out[1, :, 0], out[1, :, 1] = np.cos(t), 0.5 * np.sin(t)
    hx = 16.0 * np.sin(t) ** 3
    hy = -(13.0 * np.cos(t) - 5.0 * np.cos(2 * t) - 2.0 * np.cos(3 * t) - np.cos(4 * t))
    hx -= 0.5 * (hx.max() + hx.min())
    hy -= 0.5 * (hy.max() + hy.min())
    half = max(np.abs(hx).max(), np.abs(hy).max())
    out[2, :, 0], out[2, :, 1] = hx / half, hy / half
    return out, np.array([4, v, v], dtype=np.int64)


# mutates: out (n, size, size) uint8, which must be zero on entry
@njit(cache=True)
def _render_kernel(shape, scale, angle, pos_x, pos_y, outlines, counts, size, out):
    n = shape.shape[0]
    v_max = outlines.shape[1]
    xs = np.empty(v_max)
    ys = np.empty(v_max)
    cross = np.empty(v_max)
    for i in range(n):
        s = shape[i]
        nv = counts[s]
        radius = 0.1 * size * scale[i]
        c = np.cos(angle[i])
        si = np.sin(angle[i])
        cx = size * (0.25 + 0.5 * pos_x[i])
        cy = size * (0.25 + 0.5 * pos_y[i])
        y_lo = 1e300
        y_hi = -1e300
        for k in range(nv):
            ux = outlines[s, k, 0] * radius
            uy = outlines[s, k, 1] * radius
            xs[k] = cx + c * ux - si * uy
            ys[k] = cy + si * ux + c * uy
            y_lo = min(y_lo, ys[k])
            y_hi = max(y_hi, ys[k])
        r0 = max(0, int(np.floor(y_lo - 0.5)))
        r1 = min(size - 1, int(np.ceil(y_hi - 0.5)))
        for r in range(r0, r1 + 1):
            y = r + 0.5
            m = 0
            for k in range(nv):
                x0, y0 = xs[k], ys[k]
                k1 = k + 1 if k + 1 < nv else 0
                x1, y1 = xs[k1], ys[k1]
                if (y0 <= y) != (y1 <= y):
                    xc = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
                    j = m  # insertion sort: m is tiny
                    while j > 0 and cross[j - 1] > xc:
                        cross[j] = cross[j - 1]
                        j -= 1
                    cross[j] = xc
                    m += 1
            for p in range(0, m - 1, 2):  # even-odd rule: pixel centre c + 0.5 in [a, b)
                c0 = max(0, int(np.ceil(cross[p] - 0.5)))
                c1 = min(size, int(np.ceil(cross[p + 1] - 0.5)))
                for col in range(c0, c1):
                    out[i, r, col] = 1


@dataclass(frozen=True, slots=True)
class DSprites:
    """The procedural dSprites data set at ``size`` x ``size`` pixels.

    Nothing is stored: images are rendered from their factor classes on every call (about a microsecond each at
    64x64), so the same index always gives the same image. ``size`` < 64 renders the same geometry directly at the
    lower resolution (still binary); at 64 it is the spec's layout: sprite centre ``16 + 32 * pos`` px, outline
    radius ``6.4 * scale`` px, filled where a pixel centre lies inside the rotated polygon (even-odd rule).

    Attributes
    ----------
    size : int
        Image side in pixels (8 to 64; 64 is the original resolution).
    """

    size: int = 64

    def __post_init__(self):
        if not isinstance(self.size, int | np.integer) or not 8 <= self.size <= 64:
            raise ValueError(f"`size` must be an integer in [8, 64]; got {self.size!r}")

    def __len__(self) -> int:
        return N_IMAGES

    # --- factors -----------------------------------------------------------------------------------------------
    @staticmethod
    def factor_classes(index) -> np.ndarray:
        """(n, 6) int64 class of each factor (``latents_classes`` of the npz) for image ``index`` (int or array)."""
        idx = _check_index(index)
        return _digits(idx)

    @staticmethod
    def factor_values(index) -> np.ndarray:
        """(n, 6) float64 value of each factor (``latents_values`` of the npz) for image ``index``."""
        cls = DSprites.factor_classes(index)
        return np.stack([FACTOR_VALUES[f][cls[:, f]] for f in range(6)], axis=1)

    @staticmethod
    def index_of(classes) -> np.ndarray:
        """(n,) int64 image index of the factor ``classes``, (n, 6) ints (inverse of :meth:`factor_classes`)."""
        cls = np.asarray(classes)
        if cls.ndim != 2 or cls.shape[1] != 6 or not np.issubdtype(cls.dtype, np.integer):
            raise ValueError(f"`classes` must be an (n, 6) integer array; got {cls.dtype} {cls.shape}")
        if np.any(cls < 0) or np.any(cls >= np.asarray(FACTOR_SIZES)):
            raise ValueError(f"`classes` out of range: factor sizes are {FACTOR_SIZES}")
        return cls.astype(np.int64) @ np.asarray(FACTOR_BASES, dtype=np.int64)

    def sample_classes(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """(n, 6) factor classes drawn uniformly and independently (i.e. uniform image indices)."""
        return np.stack([rng.integers(0, k, size=n) for k in FACTOR_SIZES], axis=1).astype(np.int64)

    # --- images ------------------------------------------------------------------------------------------------
    def render(self, classes) -> np.ndarray:
        """(n, size, size) uint8 {0, 1} images of the factor ``classes``, (n, 6) ints."""
        cls = np.asarray(classes)
        self.index_of(cls)  # validation
        vals = np.stack([FACTOR_VALUES[f][cls[:, f]] for f in range(6)], axis=1)
        angle = np.mod(vals[:, 3], 2.0 * np.pi)  # 2 pi -> exactly 0: orientation 39 is the same image as 0
        out = np.zeros((cls.shape[0], self.size, self.size), dtype=np.uint8)
        outlines, counts = _OUTLINES
        _render_kernel(
            np.ascontiguousarray(cls[:, 1], dtype=np.int64),
            np.ascontiguousarray(vals[:, 2]),
            np.ascontiguousarray(angle),
            np.ascontiguousarray(vals[:, 4]),
            np.ascontiguousarray(vals[:, 5]),
            outlines,
            counts,
            self.size,
            out,
        )
        return out

    def images(self, index) -> np.ndarray:
        """(n, size, size) uint8 {0, 1} images at ``index`` (an int or an int array, npz order)."""
        return self.render(self.factor_classes(index))

    def batches(self, batch_size: int, *, seed: int = 0, n_batches: int | None = None) -> Iterator[tuple]:
        """Endless (or ``n_batches``) random minibatches ``(images (b, size, size) uint8, classes (b, 6))``.

        Indices are drawn uniformly with replacement from a ``np.random.default_rng(seed)`` stream: the same seed
        gives the same batches.
        """
        if batch_size < 1:
            raise ValueError(f"`batch_size` must be positive; got {batch_size}")
        rng = np.random.default_rng(seed)
        done = 0
        while n_batches is None or done < n_batches:
            cls = self.sample_classes(batch_size, rng)
            yield self.render(cls), cls
            done += 1

    def all_images(self) -> np.ndarray:
        """Every image, (737280, size, size) uint8, in npz order. This is 2.9 GB at size 64: only when asked."""
        out = np.empty((N_IMAGES, self.size, self.size), dtype=np.uint8)
        step = 32_768
        for start in range(0, N_IMAGES, step):
            out[start : start + step] = self.images(np.arange(start, min(start + step, N_IMAGES)))
        return out


_OUTLINES = _unit_outlines()


def _check_index(index) -> np.ndarray:
    idx = np.atleast_1d(np.asarray(index))
    if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"`index` must be an integer or a 1-d integer array; got {idx.dtype} {idx.shape}")
    if idx.size and (idx.min() < 0 or idx.max() >= N_IMAGES):
        raise ValueError(f"`index` must lie in [0, {N_IMAGES}); got values in [{idx.min()}, {idx.max()}]")
    return idx.astype(np.int64)


def _digits(idx: np.ndarray) -> np.ndarray:
    bases = np.asarray(FACTOR_BASES, dtype=np.int64)
    sizes = np.asarray(FACTOR_SIZES, dtype=np.int64)
    return (idx[:, None] // bases[None, :]) % sizes[None, :]


def dsprites(size: int = 64) -> DSprites:
    """The procedural dSprites data set (737,280 binary images, rendered lazily) at ``size`` x ``size`` pixels.

    Examples
    --------
    >>> ds = dsprites(64)
    >>> len(ds), ds.images([0, 737279]).shape
    (737280, (2, 64, 64))
    >>> ds.factor_classes(737279).tolist()
    [[0, 2, 5, 39, 31, 31]]
    """
    return DSprites(size)
