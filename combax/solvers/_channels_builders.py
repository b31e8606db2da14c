"""Instance builders: CIFAR ResNet-20/32/56 and plain VGG chains, from weights or from a seed."""

from __future__ import annotations

import numpy as np

from ._channels_problem import ChannelProblem


def importance_from_weight(w) -> np.ndarray:
    """The paper's 2D importance: per-kernel L1 norm of a (C_out, C_in, k, k) weight, divided by its Frobenius norm.

    NaNs (an all-zero layer) become 0.
    """
    w = np.asarray(w, dtype=np.float64)
    if w.ndim != 4:
        raise ValueError(f"`weights` entries must be 4-D (C_out, C_in, k, k); got shape {w.shape}")
    imp = np.abs(w).sum(axis=(2, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        imp = imp / np.linalg.norm(imp)
    return np.nan_to_num(imp, nan=0.0)


def seeded_weights(shapes, seed) -> list[np.ndarray]:
    """Synthetic conv weights for benchmarks: w[j, i, a, b] ~ N(0, s_j^2), s_j ~ LogNormal(0, 0.5) per filter.

    The per-filter scale mimics the spread of filter norms in trained networks (plain i.i.d. weights make every
    channel nearly equally important, which no trained network looks like).
    """
    rng = np.random.default_rng(seed)
    out = []
    for co, ci, k in shapes:
        scale = rng.lognormal(0.0, 0.5, size=(co, 1, 1, 1))
        out.append(rng.standard_normal((co, ci, k, k)) * scale)
    return out


def _importances(shapes, importance):
    if isinstance(importance, (int, np.integer)):
        weights = seeded_weights(shapes, int(importance))
    else:
        weights = list(importance)
        if len(weights) != len(shapes):
            raise ValueError(f"`importance` must hold {len(shapes)} conv weights; got {len(weights)}")
        for w, (co, ci, k) in zip(weights, shapes):
            if np.shape(w) != (co, ci, k, k):
                raise ValueError(f"conv weight must have shape {(co, ci, k, k)}; got {np.shape(w)}")
    return [importance_from_weight(w) for w in weights]


def _cost(resource, k, hw):
    if resource == "flops":
        return float(k * k * hw * hw)
    if resource == "params":
        return float(k * k)
    raise ValueError(f"`resource` must be 'flops' or 'params'; got {resource!r}")


def _budget(widths, src, cost, ratio):
    if not 0 < ratio:
        raise ValueError(f"`ratio` must be > 0; got {ratio}")
    full = sum(c * widths[k + 1] * widths[s] for k, (c, s) in enumerate(zip(cost, src)))
    return ratio * full


def resnet_cifar(depth: int, importance=0, *, resource: str = "flops", ratio: float = 0.5, group_size=None):
    """The channel problem of a CIFAR ResNet-(6n+2) (He et al. 2016, option-A zero-padded shortcuts).

    Maps: 0 = the image (3 channels), 1 = the stem conv output (16 channels, 32x32), then per basic block two convs
    (map s -> s+1 -> s+2) and a residual s -> s+2: identity inside a stage, ``zero_pad`` where the width doubles
    (16 -> 32 -> 64; spatial 32 -> 16 -> 8). The FC layer stays outside the model (unpruned), as in the original.

    Parameters
    ----------
    depth : 20, 32, 44, 56, 110 (any 6n + 2).
    importance : int seed (synthetic weights of :func:`seeded_weights`) or the list of 6n + 1 conv weights
        (C_out, C_in, 3, 3) in forward order; importance is the per-kernel L1 norm over the layer's Frobenius norm.
    resource : ``"flops"`` (cost 9 H W per kept channel pair) or ``"params"`` (cost 9).
    ratio : budget as a fraction of the full network's resource.
    group_size : channel group size (see :class:`ChannelProblem`), e.g. 4 or 8.

    ResNet-20 has 19 convs, 29,744 bilinear terms and 1,027 binaries in the spec's count (691 u incl. the 3 input
    channels, 336 v); with the input fixed and v = u on zero-padded channels, 976 are free.
    """
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"`depth` must be 6n + 2 with n >= 1 (20, 32, 56, ...); got {depth}")
    n = (depth - 2) // 6
    widths = [3, 16]
    src = [0]
    shapes = [(16, 3, 3)]
    hw = [32]
    residuals = []
    for stage, (c, size) in enumerate(((16, 32), (32, 16), (64, 8))):
        for b in range(n):
            s = len(widths) - 1
            widths += [c, c]
            src += [s, s + 1]
            shapes += [(c, widths[s], 3), (c, c, 3)]
            hw += [size, size]
            kind = "zero_pad" if (stage > 0 and b == 0) else "identity"
            residuals.append((s, s + 2, kind))
    cost = [_cost(resource, 3, h) for h in hw]
    imps = _importances(shapes, importance)
    convs = [(s, k + 1, a) for k, (s, a) in enumerate(zip(src, imps))]
    return ChannelProblem(widths, convs, cost, _budget(widths, src, cost, ratio), residuals, None, group_size)


VGG16_CIFAR = (3, 64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)
VGG16_CIFAR_HW = (32, 32, 16, 16, 8, 8, 8, 4, 4, 4, 2, 2, 2)


def vgg_chain(
    widths=VGG16_CIFAR, importance=0, *, spatial=None, kernel=3, resource="flops", ratio=0.5, group_size=None
):
    """A plain conv chain (VGG): conv k maps map k to map k+1; no residuals.

    Parameters
    ----------
    widths : channel counts, input first (default: VGG-16 for CIFAR).
    importance : int seed or list of conv weights (C_out, C_in, kernel, kernel).
    spatial : output size per conv (default: VGG-16 CIFAR sizes when ``widths`` is the default, else all 32).
    kernel, resource, ratio, group_size : as in :func:`resnet_cifar`.
    """
    widths = [int(w) for w in widths]
    m = len(widths) - 1
    if spatial is None:
        spatial = VGG16_CIFAR_HW if tuple(widths) == VGG16_CIFAR else (32,) * m
    if len(spatial) != m:
        raise ValueError(f"`spatial` must have one size per conv ({m}); got {len(spatial)}")
    shapes = [(widths[k + 1], widths[k], kernel) for k in range(m)]
    imps = _importances(shapes, importance)
    cost = [_cost(resource, kernel, h) for h in spatial]
    src = list(range(m))
    convs = [(k, k + 1, a) for k, a in enumerate(imps)]
    return ChannelProblem(widths, convs, cost, _budget(widths, src, cost, ratio), (), None, group_size)
