r"""Kernel-shape (4D) selection: per-filter tap masks with channels fixed, and the original two-stage scheme.

With u, v fixed the tap problem is linear:

.. math::

    \max_q \sum_l \sum_{j \in u^{(l)}} \sum_t q_{l,j,t} \sum_{i \in v^{(s_l)}} I^{(l)}_{j,i,t}
    \quad\text{s.t.}\quad \sum_l h_l\, m_{s_l} \sum_{j,t} q_{l,j,t} \le B,\quad
    q_{l,j,t} \le u^{(l)}_j,\quad \sum_t q_{l,j,t} \ge u^{(l)}_j .

Every kept filter keeps its best tap (exchange argument: all taps of a layer weigh the same, h_l m_{s_l}); the rest
is a knapsack whose items within a layer share one weight, so with x_l items taken from layer l the best choice is
the x_l most valuable: a MILP in the integer counts x_l with a concave piecewise-linear value, solved exactly by
HiGHS (scipy.optimize.milp).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ._status import Status


@dataclass(frozen=True, slots=True)
class TapResult:
    """Kernel-shape selection.

    Attributes
    ----------
    taps : tuple of (C_dst, T) bool per conv (in the order of ``convs``): kept taps per filter; None if infeasible.
    channels : the stage-1 :class:`ChannelResult` (u, v) the taps were chosen for.
    objective : float, sum of I[j, i, t] over kept (filter j, input i, tap t).
    resource : float, sum_l h_l * m_src(l) * (kept taps of layer l).
    status : Status.
    seconds : float.
    message : str.
    """

    taps: tuple | None
    channels: object
    objective: float
    resource: float
    status: Status
    seconds: float
    message: str


def _taps_iv(imp4, keep_out, keep, src, tap_cost):
    m = len(imp4)
    if not (len(keep_out) == len(src) == len(tap_cost) == m):
        raise ValueError(f"`imp4`, `keep_out`, `src` and `tap_cost` need one entry per conv ({m})")
    out = []
    for k in range(m):
        a = np.asarray(imp4[k], dtype=np.float64)
        if a.ndim != 3:
            raise ValueError(f"`imp4[{k}]` must be (C_dst, C_src, T); got shape {a.shape}")
        if not np.all(np.isfinite(a)) or np.any(a < 0):
            raise ValueError(f"`imp4[{k}]` must be finite and non-negative")
        if len(keep_out[k]) != a.shape[0] or len(keep[src[k]]) != a.shape[1]:
            raise ValueError(f"`imp4[{k}]` shape {a.shape} does not match its masks")
        out.append(a)
    return out


def select_taps(imp4, keep_out, keep, src, tap_cost, budget, time_limit=None):
    """Exact per-filter tap selection with channels fixed (stage 2 of the two-stage scheme).

    Parameters
    ----------
    imp4 : list of (C_dst, C_src, T) float >= 0, per conv.
    keep_out : list of (C_dst,) bool per conv; keep : list of (C_map,) bool per map; src : source map per conv.
    tap_cost : per conv, the resource of one kept (tap, input channel) pair (H W for FLOPs, 1 for parameters).
    budget : float.

    Returns
    -------
    (taps, objective, resource, status): taps a list of (C_dst, T) bool, or None when even one tap per kept filter
    exceeds the budget (status "infeasible").

    Notes
    -----
    O(sum_l C_l T log) plus one small MILP with one integer per layer.
    """
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import coo_matrix

    imp4 = _taps_iv(imp4, keep_out, keep, src, tap_cost)
    m = len(imp4)
    taps = []
    weight = np.zeros(m)
    items = []  # per conv: (values sorted desc, (j, t) order)
    base_res = 0.0
    for k in range(m):
        u = np.asarray(keep_out[k], bool)
        v = np.asarray(keep[src[k]], bool)
        val = imp4[k][:, v, :].sum(1)  # (C_dst, T)
        q = np.zeros(val.shape, bool)
        weight[k] = float(tap_cost[k]) * int(v.sum())
        rows = np.flatnonzero(u)
        best = np.argmax(val[rows], axis=1)  # lowest t on ties
        q[rows, best] = True
        base_res += weight[k] * len(rows)
        rest_j, rest_t = np.nonzero(u[:, None] & ~q)
        vals = val[rest_j, rest_t]
        order = np.lexsort((rest_t, rest_j, -vals))
        items.append((vals[order], rest_j[order], rest_t[order]))
        taps.append(q)
    cap = float(budget) - base_res
    if cap < -1e-9 * max(1.0, abs(budget)):
        return None, float("nan"), float("nan"), Status.INFEASIBLE
    sizes = [len(it[0]) for it in items]
    nz = int(sum(sizes))
    if nz:
        nv = nz + m
        offs = np.concatenate([[0], np.cumsum(sizes)])
        rows, cols, vals = [], [], []
        for k in range(m):
            rows += [np.full(sizes[k], k), [k]]
            cols += [np.arange(offs[k], offs[k + 1]), [nz + k]]
            vals += [np.ones(sizes[k]), [-1.0]]
        rows.append(np.full(m, m))
        cols.append(nz + np.arange(m))
        vals.append(weight)
        a = coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(m + 1, nv))
        lo = np.concatenate([np.zeros(m), [-np.inf]])
        hi = np.concatenate([np.zeros(m), [max(cap, 0.0)]])
        c = -np.concatenate([np.concatenate([it[0] for it in items]), np.zeros(m)])
        ub = np.concatenate([np.ones(nz), sizes])
        opts = {"mip_rel_gap": 0.0}
        if time_limit is not None:
            opts["time_limit"] = float(time_limit)
        res = milp(c, constraints=LinearConstraint(a.tocsr(), lo, hi), integrality=np.r_[np.zeros(nz), np.ones(m)],
                   bounds=Bounds(np.zeros(nv), ub), options=opts)  # fmt: skip
        x = np.round(res.x[nz:]).astype(int)
        for k in range(m):
            _, jj, tt = items[k]
            taps[k][jj[: x[k]], tt[: x[k]]] = True
        status = Status.OPTIMAL if res.status == 0 else Status.TIME_LIMIT
    else:
        status = Status.OPTIMAL
    obj, resource = tap_objective(imp4, taps, keep, src, tap_cost)
    return taps, obj, resource, status


def tap_objective(imp4, taps, keep, src, tap_cost):
    """(objective, resource) of tap masks: recomputed from the masks, as every test does."""
    obj = 0.0
    resource = 0.0
    for k, q in enumerate(taps):
        v = np.asarray(keep[src[k]], bool)
        obj += float((np.asarray(imp4[k])[:, v, :] * q[:, None, :]).sum())
        resource += float(tap_cost[k]) * int(v.sum()) * int(q.sum())
    return obj, resource


def solve_4d(widths, convs4, tap_cost, budget, residuals=(), *, gamma=0.5, method="bnb", time_limit=None, rel_gap=0.0,
             min_keep=None):  # fmt: skip
    """The original two-stage kernel-shape scheme: channels with budget B / gamma, then taps with budget B.

    Parameters
    ----------
    widths : map widths, input first.
    convs4 : sequence of (src_map, dst_map, importance4) with importance4 (C_dst, C_src, T) >= 0 (T = K^2 taps).
    tap_cost : per conv, resource per kept (tap, input, filter) triple: H W for FLOPs, 1 for parameters.
    budget : B.
    residuals : as in :class:`ChannelProblem`.
    gamma : slack in (0, 1]; stage 1 solves the channel problem (importance summed over taps, cost T * tap_cost)
        with budget B / gamma.
    method, time_limit, rel_gap : for stage 1, as in :func:`solve`.
    min_keep : int, (M + 1,) ints or None: the least number of kept output channels per map in stage 1, as in
        :class:`ChannelProblem` (stage 2 keeps every stage-1 filter, so the counts hold for the result too).

    Returns
    -------
    TapResult. Status "infeasible" when stage 1 is infeasible or its channels cannot fit one tap per filter in B.
    """
    from . import channels

    t0 = time.perf_counter()
    if not 0 < gamma <= 1:
        raise ValueError(f"`gamma` must be in (0, 1]; got {gamma}")
    convs4 = list(convs4)
    imp4 = [np.asarray(a, dtype=np.float64) for _, _, a in convs4]
    for k, a in enumerate(imp4):
        if a.ndim != 3:
            raise ValueError(f"`convs4[{k}]` importance must be (C_dst, C_src, T); got shape {a.shape}")
    cost2 = [float(tap_cost[k]) * imp4[k].shape[2] for k in range(len(imp4))]
    prob = channels.ChannelProblem(widths, [(s, d, a.sum(2)) for (s, d, _), a in zip(convs4, imp4)], cost2,
                                   budget / gamma, residuals, min_keep=min_keep)  # fmt: skip
    ch = channels.solve(prob, method=method, time_limit=time_limit, rel_gap=rel_gap)
    if ch.keep is None:
        return TapResult(None, ch, float("nan"), float("nan"), Status.INFEASIBLE, time.perf_counter() - t0, ch.message)
    src = [int(s) for s, _, _ in convs4]
    taps, obj, res, st = select_taps(imp4, ch.keep_out, ch.keep, src, tap_cost, budget)
    if taps is None:
        msg = "stage-1 channels cannot keep one tap per filter within the budget; raise `gamma`"
        return TapResult(None, ch, obj, res, st, time.perf_counter() - t0, msg)
    if st == Status.OPTIMAL and ch.status != Status.OPTIMAL:
        st = ch.status
    return TapResult(tuple(taps), ch, obj, res, st, time.perf_counter() - t0, "two-stage: channels then taps")
