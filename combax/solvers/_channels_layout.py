"""Binary-variable layout of a (group-free) channel problem, shared by brute force and the MILP / CP-SAT references.

Free binaries, in order: ``u[t]`` for t = 1..M (C_t bits each), then ``v[t]`` for every residual target t
(identity and projection: C_t bits; zero_pad: the first C_s bits, the rest is ``u[t]``). ``uvar[t][j]`` and
``vvar[t][j]`` give the binary index of each channel; ``vvar[0][j] = -1`` marks the fixed input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np


@dataclass(frozen=True, slots=True)
class Layout:
    n: int
    uvar: list  # uvar[t]: (C_t,) int64 for t >= 1; uvar[0] is None
    vvar: list  # vvar[t]: (C_t,) int64; vvar[0] = -1 (fixed input)


def layout(c: dict) -> Layout:
    widths, res_kind, res_src = c["widths"], c["res_kind"], c["res_src"]
    m = len(widths) - 1
    uvar = [None]
    nxt = 0
    for t in range(1, m + 1):
        uvar.append(np.arange(nxt, nxt + widths[t], dtype=np.int64))
        nxt += int(widths[t])
    vvar = [np.full(widths[0], -1, dtype=np.int64)] + [uvar[t] for t in range(1, m + 1)]
    for t in range(1, m + 1):
        if res_kind[t] == 0:
            continue
        k = int(widths[res_src[t]]) if res_kind[t] == 2 else int(widths[t])
        v = uvar[t].copy()
        v[:k] = np.arange(nxt, nxt + k)
        nxt += k
        vvar[t] = v
    return Layout(nxt, uvar, vvar)


def linear_rows(c: dict, lay: Layout):
    """Linear constraints other than the budget, as rows (coef dict, lo, hi) over the binaries.

    At least ``kmin[t]`` (``min_keep``, >= 1) kept channels in u and v of every map, and the residual links
    u_t <= v_t (<= u_t + v_s for identity / zero_pad).
    """
    rows = []
    m = len(c["widths"]) - 1
    for t in range(1, m + 1):
        lo = float(c["kmin"][t])
        rows.append(({int(x): 1.0 for x in lay.uvar[t]}, lo, np.inf))
        kind = c["res_kind"][t]
        if kind == 0:
            continue
        rows.append(({int(x): 1.0 for x in lay.vvar[t]}, lo, np.inf))  # implied by u_t <= v_t; kept for the LP
        s = c["res_src"][t]
        for j in range(c["widths"][t]):
            uj, vj = int(lay.uvar[t][j]), int(lay.vvar[t][j])
            if uj == vj:
                continue
            rows.append(({uj: 1.0, vj: -1.0}, -np.inf, 0.0))  # u <= v
            if kind in (1, 2):
                sj = int(lay.vvar[s][j])
                if sj < 0:  # shortcut from the fixed input: always fed
                    continue
                rows.append(({vj: 1.0, uj: -1.0, sj: -1.0}, -np.inf, 0.0))  # v <= u + v_s
    return rows


class Flat(NamedTuple):
    """Contiguous arrays of a group-free problem for the numba kernels.

    widths (M+1,), src (M,), imp (sum_k C_{k+1} C_src,) row-major per conv, off (M+1,) offsets into imp, cost (M,),
    lin (M, 3), res_src (M+1,) (-1: none), res_kind (M+1,) (0 none, 1 identity, 2 zero_pad, 3 projection),
    cmax = max width, kmin (M+1,) the least number of kept channels per map (``min_keep``; kmin[0] = widths[0]).
    """

    widths: np.ndarray
    src: np.ndarray
    imp: np.ndarray
    off: np.ndarray
    cost: np.ndarray
    lin: np.ndarray
    res_src: np.ndarray
    res_kind: np.ndarray
    cmax: int
    kmin: np.ndarray


def flat(c: dict) -> Flat:
    mats = c["mats"]
    off = np.zeros(len(mats) + 1, dtype=np.int64)
    off[1:] = np.cumsum([a.size for a in mats])
    imp = np.ascontiguousarray(np.concatenate([a.ravel() for a in mats]), dtype=np.float64)
    return Flat(
        np.ascontiguousarray(c["widths"], dtype=np.int64), np.ascontiguousarray(c["src"], dtype=np.int64), imp, off,
        np.ascontiguousarray(c["cost"], dtype=np.float64), np.ascontiguousarray(c["lin"], dtype=np.float64),
        np.ascontiguousarray(c["res_src"], dtype=np.int64), np.ascontiguousarray(c["res_kind"], dtype=np.int64),
        int(c["widths"].max()), np.ascontiguousarray(c["kmin"], dtype=np.int64),
    )  # fmt: skip


def masks_from_matrix(f: Flat, U, V):
    """Lists of masks per map from the (M+1, cmax) state matrices of the kernels."""
    m = len(f.widths) - 1
    u = [None] + [U[t, : f.widths[t]].astype(bool).copy() for t in range(1, m + 1)]
    v = [np.ones(f.widths[0], bool)] + [V[t, : f.widths[t]].astype(bool).copy() for t in range(1, m + 1)]
    return u, v
