"""The original work's greedy (alternating top-k block ascent, then ratio fill), as a method and as the incumbent."""

from __future__ import annotations

import numpy as np

from ._channels_kernels import (
    _counts_kernel,
    _fill_kernel,
    _objective_kernel,
    _resource_kernel,
    _topk_init_kernel,
)
from ._channels_layout import Flat


def resource_of(f: Flat, U, V) -> float:
    m = f.widths.size - 1
    n_out = np.zeros(m, np.int64)
    m_in = np.zeros(m, np.int64)
    _counts_kernel(f.widths, U, V, n_out, m_in, f.src)
    return float(_resource_kernel(f.cost, f.lin, n_out, m_in))


def minimal_state(f: Flat):
    """The first ``kmin[t]`` channels of every map t >= 1 (one by default) with v = u, residual streams aligned: the
    smallest valid network."""
    m = f.widths.size - 1
    U = np.zeros((m + 1, f.cmax), np.uint8)
    V = np.zeros((m + 1, f.cmax), np.uint8)
    U[0, : f.widths[0]] = 1
    V[0, : f.widths[0]] = 1
    for t in range(1, m + 1):
        U[t, : f.kmin[t]] = 1
        V[t, : f.kmin[t]] = 1  # v = u: valid for every residual kind, and the smallest
    return U, V


def greedy_state(f: Flat, budget: float, start=None):
    """(U, V, objective) of the greedy; ``start`` = (U, V) replaces the top-k phase. Needs budget >= min resource.

    The top-k phase keeps max(k, kmin[t]) channels per map (k = 4, 2, 1, the first that fits the budget), else the
    minimal state; the fill only adds channels: the result keeps at least ``kmin[t]`` channels in every map.
    """
    m = f.widths.size - 1
    if start is not None:
        U, V = start[0].copy(), start[1].copy()
    else:
        U = np.zeros((m + 1, f.cmax), np.uint8)
        V = np.zeros((m + 1, f.cmax), np.uint8)
        for kcap in (4, 2, 1):
            _topk_init_kernel(f.widths, f.src, f.imp, f.off, f.res_src, f.res_kind, f.kmin, kcap, U, V)
            if resource_of(f, U, V) <= budget:
                break
        else:
            U, V = minimal_state(f)
    obj = _fill_kernel(f.widths, f.src, f.imp, f.off, f.cost, f.lin, f.res_src, f.res_kind, float(budget), U, V)
    return U, V, float(obj)


def objective_of(f: Flat, U, V) -> float:
    return float(_objective_kernel(f.widths, f.src, f.imp, f.off, U, V))
