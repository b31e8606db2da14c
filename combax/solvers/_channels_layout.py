"""Binary-variable layout of a (group-free) channel problem, shared by brute force, the MILP / CP-SAT references and
the branch-and-bound's LP relaxation (`_channels_lp`).

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
    """Linear constraints other than the budget, as rows (coef dict, lo, hi, tag) over the binaries.

    At least ``kmin[t]`` (``min_keep``, >= 1) kept channels in u and v of every map (tag ``("keep", t)``), and the
    residual links u_t <= v_t (tag ``("u<=v", t, j)``) and v_t <= u_t + v_s for identity / zero_pad
    (``("fed", t, j)``).
    """
    rows = []
    m = len(c["widths"]) - 1
    for t in range(1, m + 1):
        lo = float(c["kmin"][t])
        rows.append(({int(x): 1.0 for x in lay.uvar[t]}, lo, np.inf, ("keep", t)))
        kind = c["res_kind"][t]
        if kind == 0:
            continue
        rows.append(({int(x): 1.0 for x in lay.vvar[t]}, lo, np.inf, ("keep", t)))  # implied by u_t <= v_t
        s = c["res_src"][t]
        for j in range(c["widths"][t]):
            uj, vj = int(lay.uvar[t][j]), int(lay.vvar[t][j])
            if uj == vj:
                continue
            rows.append(({uj: 1.0, vj: -1.0}, -np.inf, 0.0, ("u<=v", t, j)))
            if kind in (1, 2):
                sj = int(lay.vvar[s][j])
                if sj < 0:  # shortcut from the fixed input: always fed
                    continue
                rows.append(({vj: 1.0, uj: -1.0, sj: -1.0}, -np.inf, 0.0, ("fed", t, j)))
    return rows


def bilinear_pairs(c: dict, lay: Layout):
    """The bilinear pairs of the F1 model: (var_u, var_v, importance, cost) per kept-weight product, and the
    per-binary objective and resource terms and the constant resource (convs reading the fixed input are linear)."""
    m = len(c["widths"]) - 1
    pu, pv, pimp, pcost = [], [], [], []
    lin_obj = np.zeros(lay.n)
    lin_res = np.zeros(lay.n)
    const_res = 0.0
    for k in range(m):
        t, s = k + 1, c["src"][k]
        a = c["mats"][k]
        uu, vv = lay.uvar[t], lay.vvar[s]
        lin_res[uu] += c["lin"][k, 1]
        const_res += c["lin"][k, 2]
        if s == 0:  # the input is fixed: the product is u itself
            lin_obj[uu] += a.sum(1)
            lin_res[uu] += c["cost"][k] * c["widths"][0]
            const_res += c["lin"][k, 0] * c["widths"][0]
            continue
        lin_res[vv] += c["lin"][k, 0]
        jj, ii = np.meshgrid(np.arange(len(uu)), np.arange(len(vv)), indexing="ij")
        pu.append(uu[jj.ravel()])
        pv.append(vv[ii.ravel()])
        pimp.append(a.ravel())
        pcost.append(np.full(a.size, c["cost"][k]))
    cat = lambda xs, dt: np.concatenate(xs).astype(dt) if xs else np.zeros(0, dt)  # noqa: E731
    return cat(pu, np.int64), cat(pv, np.int64), cat(pimp, float), cat(pcost, float), lin_obj, lin_res, const_res


class F1Model(NamedTuple):
    """The F1 (full McCormick) model: maximise ``obj @ z`` subject to ``lo <= a @ z <= hi``, z = (binaries, y).

    Rows: y_q <= u (q < P), y_q <= v (P <= . < 2P), y_q - u - v >= -1 (2P <= . < 3P), the budget (row 3P), then
    ``linear_rows`` in order (``tags[r - 3P - 1]``). ``pu``, ``pv``: the binaries of each pair.
    """

    a: object  # scipy.sparse csr_matrix (rows, n + P)
    lo: np.ndarray
    hi: np.ndarray
    obj: np.ndarray
    n: int
    pu: np.ndarray
    pv: np.ndarray
    lin_obj: np.ndarray
    lin_res: np.ndarray
    tags: list


def f1_model(c: dict, lay: Layout) -> F1Model:
    """Assemble :class:`F1Model` for the canonical problem ``c`` (shared by the HiGHS reference and the B&B's LP
    relaxation)."""
    from scipy.sparse import coo_matrix

    pu, pv, pimp, pcost, lin_obj, lin_res, const_res = bilinear_pairs(c, lay)
    n, p = lay.n, len(pu)
    nv = n + p
    y = n + np.arange(p)
    rows, cols, vals, lo, hi = [], [], [], [], []
    r = 0
    # y <= u, y <= v, y - u - v >= -1
    for a in (pu, pv):
        rows += [r + np.arange(p), r + np.arange(p)]
        cols += [y, a]
        vals += [np.ones(p), -np.ones(p)]
        lo.append(np.full(p, -np.inf))
        hi.append(np.zeros(p))
        r += p
    rows += [r + np.arange(p)] * 3
    cols += [y, pu, pv]
    vals += [np.ones(p), -np.ones(p), -np.ones(p)]
    lo.append(np.full(p, -1.0))
    hi.append(np.full(p, np.inf))
    r += p
    # budget
    rows.append(np.full(nv, r))
    cols.append(np.arange(nv))
    vals.append(np.concatenate([lin_res, pcost]))
    lo.append([-np.inf])
    hi.append([c["budget"] - const_res])
    r += 1
    tags = []
    for coef, l_, h_, tag in linear_rows(c, lay):
        rows.append(np.full(len(coef), r))
        cols.append(np.fromiter(coef.keys(), np.int64))
        vals.append(np.fromiter(coef.values(), float))
        lo.append([l_])
        hi.append([h_])
        tags.append(tag)
        r += 1
    a = coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(r, nv)).tocsr()
    obj = np.concatenate([lin_obj, pimp])
    return F1Model(a, np.concatenate(lo), np.concatenate(hi), obj, n, pu, pv, lin_obj, lin_res, tags)


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


def canonical_from_flat(f: Flat, budget: float) -> dict:
    """The canonical dict of the group-free problem that ``f`` flattens (the inverse of :func:`flat`)."""
    mats = [f.imp[f.off[k] : f.off[k + 1]].reshape(f.widths[k + 1], f.widths[f.src[k]]) for k in range(f.src.size)]
    return dict(widths=f.widths, src=f.src, mats=mats, cost=f.cost, lin=f.lin, res_src=f.res_src,
                res_kind=f.res_kind, kmin=f.kmin, budget=float(budget))  # fmt: skip


def masks_from_matrix(f: Flat, U, V):
    """Lists of masks per map from the (M+1, cmax) state matrices of the kernels."""
    m = len(f.widths) - 1
    u = [None] + [U[t, : f.widths[t]].astype(bool).copy() for t in range(1, m + 1)]
    v = [np.ones(f.widths[0], bool)] + [V[t, : f.widths[t]].astype(bool).copy() for t in range(1, m + 1)]
    return u, v
