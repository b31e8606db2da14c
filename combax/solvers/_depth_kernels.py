"""numba kernels of the depth-compression DP (see :mod:`combax.solvers.depth` for the mathematics).

Conventions shared by every kernel:

* positions are ``0..n-1`` with ``n = L + 1``; a NaN table entry marks a block or segment that is not allowed;
* stage 2 works on an edge list, one edge per allowed quadruple ``(i, m, x, a)`` (segment ``(i, m]`` from a
  boundary at ``i`` with flag ``x`` to one at ``m`` with flag ``a``), sorted by ``(m, a, i, x)``;
* a solution is returned as a per-position code array (``int8``, length ``n``): ``0`` not a cut, ``1`` cut
  without boundary (merged conv ends here, no activation decision), ``2`` boundary whose activation is kept,
  ``3`` boundary without activation (flag 0, only at optional positions).

Kernels never validate, raise or print: the wrapper has checked everything. They return status codes
(``0`` optimal, ``1`` infeasible).
"""

import numpy as np
from numba import njit

CODE_NONE = 0
CODE_CUT = 1
CODE_ACT = 2
CODE_NOACT = 3


# mutates: nothing (returns new arrays)
@njit(cache=True)
def _stage1_kernel(T):
    """General stage 1: shortest path inside every segment. Returns (T_opt, parent).

    ``T_opt[i, m] = min_{i <= k < m, T[k, m] allowed} T_opt[i, k] + T[k, m]`` with ``T_opt[i, i] = 0``;
    ``parent[i, m]`` is the argmin ``k`` (smallest ``k`` on ties, so the single block ``(i, m]`` wins a tie).
    """
    n = T.shape[0]
    topt = np.full((n, n), np.nan)
    parent = np.full((n, n), -1, np.int64)
    for i in range(n):
        topt[i, i] = 0.0
        for m in range(i + 1, n):
            best = np.inf
            arg = -1
            for k in range(i, m):
                t = T[k, m]
                fk = topt[i, k]
                if t != t or fk != fk:
                    continue
                v = fk + t
                if v < best:
                    best = v
                    arg = k
            if arg >= 0:
                topt[i, m] = best
                parent[i, m] = arg
    for i in range(n):
        topt[i, i] = np.nan
    return topt, parent


# mutates: nothing (returns new arrays)
@njit(cache=True)
def _stage1_original_kernel(T):
    """The original prefix-restricted stage 1, defined on allowed blocks only. Returns (T_opt, parent).

    ``T_opt[i, j] = min(T[i, j], min_{i<k<j, (i,k), (k,j) allowed} T_opt[i, k] + T[k, j])``, blocks by
    increasing length; the direct block wins ties, then the smallest ``k``.
    """
    n = T.shape[0]
    topt = np.full((n, n), np.nan)
    parent = np.full((n, n), -1, np.int64)
    for length in range(1, n):
        for i in range(n - length):
            j = i + length
            if T[i, j] != T[i, j]:
                continue
            best = T[i, j]
            arg = i
            for k in range(i + 1, j):
                if T[i, k] != T[i, k] or T[k, j] != T[k, j]:
                    continue
                v = topt[i, k] + T[k, j]
                if v < best:
                    best = v
                    arg = k
            topt[i, j] = best
            parent[i, j] = arg
    return topt, parent


# mutates: nothing (returns a new array)
@njit(cache=True)
def _extend_importance_kernel(h):
    """Chained importance ``I_ext`` on the allowed quadruples (NaN entries of ``h`` stay NaN).

    ``I_ext[i,j,x,y] = max(h[i,j,x,y], max_{i<k<j} c[k] + h[k,j,0,y])`` where ``c[k]`` is the best chain of
    allowed pieces from ``(i, x)`` to ``(k, 0)`` with flag 0 at every joint:
    ``c[k] = max(h[i,k,x,0], max_{i<k'<k} c[k'] + h[k',k,0,0])`` (a shortest path inside the segment, so a
    chain's prefixes need not be allowed themselves). The direct value wins ties.
    """
    n = h.shape[0]
    iext = np.full(h.shape, np.nan)
    c = np.empty(n)
    for i in range(n):
        for x in range(2):
            for k in range(i + 1, n):
                best = h[i, k, x, 0]
                if best != best:
                    best = -np.inf
                for kk in range(i + 1, k):
                    a = c[kk]
                    b = h[kk, k, 0, 0]
                    if a == -np.inf or b != b:
                        continue
                    if a + b > best:
                        best = a + b
                c[k] = best
            for j in range(i + 1, n):
                for y in range(2):
                    best = h[i, j, x, y]
                    if best != best:
                        continue
                    for k in range(i + 1, j):
                        a = c[k]
                        b = h[k, j, 0, y]
                        if a == -np.inf or b != b:
                            continue
                        if a + b > best:
                            best = a + b
                    iext[i, j, x, y] = best
    return iext


# mutates: code
@njit(cache=True)
def _mark_segment(code, parent, i, m):
    """Mark the stage-1 cuts strictly inside segment ``(i, m]`` as ``CODE_CUT``."""
    k = parent[i, m]
    while k > i:
        if code[k] == CODE_NONE:
            code[k] = CODE_CUT
        k = parent[i, k]


# mutates: nothing (returns new arrays)
@njit(cache=True)
def _min_latency_kernel(n, e_i, e_x, e_m, e_a, e_lat):
    """Smallest total latency reaching each boundary state ``(m, a)``; ``inf`` where unreachable."""
    best = np.full((n, 2), np.inf)
    best[0, 1] = 0.0
    for e in range(e_i.shape[0]):
        s = best[e_i[e], e_x[e]]
        if s == np.inf:
            continue
        v = s + e_lat[e]
        if v < best[e_m[e], e_a[e]]:
            best[e_m[e], e_a[e]] = v
    return best


# mutates: nothing (returns new arrays)
@njit(cache=True)
def _knapsack_kernel(n, e_i, e_x, e_m, e_a, e_g, e_v, B, parent):
    """Discretised stage 2 with exact integer latency per state.

    ``D[m, a, t]`` is the best importance of a boundary sequence ending at ``(m, a)`` with integer latency exactly
    ``t``: ``D[0, 1, 0] = 0`` and ``D[m, a, t] = max_{edges (i, x) -> (m, a)} D[i, x, t - g] + v``. The first
    edge in ``(i, x)`` order wins a tie. The answer maximises ``D[L, a, t]`` over ``t <= B``; ties go to the
    smaller ``t``, then to flag 1. Returns ``(status, objective, t, code)``.

    Only ``t >= lo[m, a]`` (the smallest reachable integer latency of the state) is stored and swept, so the work
    is ``O(Σ_edges (B - lo))`` rather than ``O(|E| B)``; entries below ``lo`` are never read.
    """
    code = np.zeros(n, np.int8)
    if B < 0:
        return 1, np.nan, -1, code
    D = np.empty((n, 2, B + 1))
    P = np.empty((n, 2, B + 1), np.int32)
    lo = np.full((n, 2), B + 1, np.int64)
    D[0, 1, :] = -np.inf
    D[0, 1, 0] = 0.0
    lo[0, 1] = 0
    n_edges = e_i.shape[0]
    e = 0
    while e < n_edges:
        m = e_m[e]
        a = e_a[e]
        f = e
        low = B + 1
        while f < n_edges and e_m[f] == m and e_a[f] == a:
            s = lo[e_i[f], e_x[f]] + e_g[f]
            if s < low:
                low = s
            f += 1
        if low > B:
            e = f
            continue
        lo[m, a] = low
        dst = D[m, a]
        pdst = P[m, a]
        dst[low:] = -np.inf
        for k in range(e, f):
            g = e_g[k]
            start = lo[e_i[k], e_x[k]] + g
            if start > B:
                continue
            v = e_v[k]
            src = D[e_i[k], e_x[k]]
            for t in range(start, B + 1):
                sv = src[t - g]
                if sv == -np.inf:
                    continue
                c = sv + v
                if c > dst[t]:
                    dst[t] = c
                    pdst[t] = k
        e = f
    L = n - 1
    best = -np.inf
    bt = -1
    ba = -1
    for t in range(min(lo[L, 0], lo[L, 1]), B + 1):
        for a in (1, 0):
            if t >= lo[L, a] and D[L, a, t] > best:
                best = D[L, a, t]
                bt = t
                ba = a
    if bt < 0:
        return 1, np.nan, -1, code
    m = L
    a = ba
    t = bt
    while m > 0:
        code[m] = CODE_ACT if a == 1 else CODE_NOACT
        e = P[m, a, t]
        i = e_i[e]
        _mark_segment(code, parent, i, m)
        t -= e_g[e]
        a = e_x[e]
        m = i
    return 0, best, bt, code


# mutates: nothing (returns new arrays)
@njit(cache=True)
def _nondominated(lat, obj):
    """Indices of the non-dominated pairs, sorted by latency (ties: larger objective, then lower index)."""
    o1 = np.argsort(-obj, kind="mergesort")
    o2 = np.argsort(lat[o1], kind="mergesort")
    order = o1[o2]
    keep = np.empty(order.shape[0], np.int64)
    nk = 0
    best = -np.inf
    for q in order:
        if obj[q] > best:
            best = obj[q]
            keep[nk] = q
            nk += 1
    return keep[:nk]


# mutates: nothing (returns new arrays)
@njit(cache=True)
def _pareto_kernel(n, e_i, e_x, e_m, e_a, e_lat, e_v, budget, parent):
    """Exact stage 2: non-dominated (latency, importance) pairs per boundary state.

    State ``(0, 1)`` holds ``(0, 0)``; every edge ``(i, x) -> (m, a)`` maps each pair ``(tau, v)`` at ``(i, x)`` to
    ``(tau + T_opt[i, m], v + I_ext[i, m, x, a])``; pairs with latency above ``budget`` are dropped; dominated
    pairs are removed per state. Identical pairs keep the first candidate in ``(i, x, pair)`` order.
    Returns ``(latency, objective, code)`` of the final front, sorted by latency; ``code`` has one row per point.
    """
    cap = 1024
    p_lat = np.empty(cap)
    p_obj = np.empty(cap)
    p_pred = np.empty(cap, np.int64)
    p_m = np.empty(cap, np.int64)
    p_a = np.empty(cap, np.int64)
    start = np.zeros((n, 2), np.int64)
    stop = np.zeros((n, 2), np.int64)
    p_lat[0] = 0.0
    p_obj[0] = 0.0
    p_pred[0] = -1
    p_m[0] = 0
    p_a[0] = 1
    npts = 1
    stop[0, 1] = 1
    n_edges = e_i.shape[0]
    e = 0
    while e < n_edges:
        m = e_m[e]
        a = e_a[e]
        f = e
        ncand = 0
        while f < n_edges and e_m[f] == m and e_a[f] == a:
            ncand += stop[e_i[f], e_x[f]] - start[e_i[f], e_x[f]]
            f += 1
        c_lat = np.empty(ncand)
        c_obj = np.empty(ncand)
        c_pred = np.empty(ncand, np.int64)
        nc = 0
        for g in range(e, f):
            s0 = start[e_i[g], e_x[g]]
            s1 = stop[e_i[g], e_x[g]]
            for p in range(s0, s1):
                lat = p_lat[p] + e_lat[g]
                if lat > budget:
                    break  # pairs at a state are sorted by latency
                c_lat[nc] = lat
                c_obj[nc] = p_obj[p] + e_v[g]
                c_pred[nc] = p
                nc += 1
        e = f
        if nc == 0:
            continue
        keep = _nondominated(c_lat[:nc], c_obj[:nc])
        nk = keep.shape[0]
        if npts + nk > cap:
            while npts + nk > cap:
                cap *= 2
            p_lat = _grow_f(p_lat, cap)
            p_obj = _grow_f(p_obj, cap)
            p_pred = _grow_i(p_pred, cap)
            p_m = _grow_i(p_m, cap)
            p_a = _grow_i(p_a, cap)
        start[m, a] = npts
        for q in keep:
            p_lat[npts] = c_lat[q]
            p_obj[npts] = c_obj[q]
            p_pred[npts] = c_pred[q]
            p_m[npts] = m
            p_a[npts] = a
            npts += 1
        stop[m, a] = npts
    L = n - 1
    # final front: merge the states (L, 1) and (L, 0) (flag 1 first, so it wins identical pairs)
    n1 = stop[L, 1] - start[L, 1]
    n0 = stop[L, 0] - start[L, 0]
    idx = np.empty(n1 + n0, np.int64)
    for q in range(n1):
        idx[q] = start[L, 1] + q
    for q in range(n0):
        idx[n1 + q] = start[L, 0] + q
    keep = _nondominated(p_lat[idx], p_obj[idx])
    nf = keep.shape[0]
    out_lat = np.empty(nf)
    out_obj = np.empty(nf)
    codes = np.zeros((nf, n), np.int8)
    for r in range(nf):
        p = idx[keep[r]]
        out_lat[r] = p_lat[p]
        out_obj[r] = p_obj[p]
        while p > 0:
            m = p_m[p]
            codes[r, m] = CODE_ACT if p_a[p] == 1 else CODE_NOACT
            q = p_pred[p]
            _mark_segment(codes[r], parent, p_m[q], m)
            p = q
    return out_lat, out_obj, codes


@njit(cache=True)
def _grow_f(a, cap):
    b = np.empty(cap, a.dtype)
    b[: a.shape[0]] = a
    return b


@njit(cache=True)
def _grow_i(a, cap):
    b = np.empty(cap, a.dtype)
    b[: a.shape[0]] = a
    return b
