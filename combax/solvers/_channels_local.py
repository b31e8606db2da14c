"""Local search for the channel QCQP (primal heuristic of branch-and-bound), numba.

A state is a valid selection (U, V) (see :mod:`combax.solvers._channels_kernels`). Moves are built from *toggles*
(t, j, kind): kind 0 flips u and v of channel j of map t together (the only kind on maps that are not residual
targets, and on zero-padded channels), kind 1 flips u only, kind 2 flips v only (residual targets). A toggle is
applied and kept only if every constraint touching channel j (at map t and at the residual targets reading map t)
holds afterwards, and no move leaves a map with fewer than ``kmin[t]`` kept channels (``min_keep``; swaps keep the
counts, fills only add, drops stop at the minimum), so every accepted state is valid; the resource depends on the
counts only.

Moves, repeated until none improves the objective:

1. swaps inside one (map, kind) class: drop the kept toggle of least value, add the free toggle of most value (counts
   and resource unchanged);
2. fill: add the free toggle of best d objective / d resource that fits the budget, until none fits;
3. drop one kept toggle, then fill; kept if the objective grows. The ``max_drops`` kept toggles of least lost
   objective per saved resource are tried, in that order.

The objective never decreases; ties keep the current state. Deterministic.
"""

import numpy as np
from numba import njit

from ._channels_kernels import _objective_kernel, _scores_kernel


@njit(cache=True)
def _ls_chan_ok_kernel(widths, res_src, res_kind, U, V, t, j):
    # 1 if every constraint on channel j of map t (as a residual target or not) holds
    if t == 0:
        return 1
    kd = res_kind[t]
    u = U[t, j]
    v = V[t, j]
    if kd == 0:
        return 1 if u == v else 0
    if u > v:
        return 0
    if kd == 1 or kd == 2:
        s = res_src[t]
        if j < widths[s]:
            vs = 1 if s == 0 else V[s, j]
            if v > u + vs:
                return 0
        elif u != v:
            return 0
    return 1


@njit(cache=True)
def _ls_toggle_ok_kernel(widths, res_src, res_kind, U, V, t, j):
    if _ls_chan_ok_kernel(widths, res_src, res_kind, U, V, t, j) == 0:
        return 0
    m = widths.size - 1
    for t2 in range(t + 1, m + 1):
        if res_src[t2] == t and res_kind[t2] != 0 and j < widths[t2]:
            if _ls_chan_ok_kernel(widths, res_src, res_kind, U, V, t2, j) == 0:
                return 0
    return 1


@njit(cache=True)
def _ls_flip_u_kernel(widths, src, imp, off, U, outs, nu, t, j):
    # flips U[t, j]; updates out-scores of the conv's source map and the count
    k = t - 1
    s = src[k]
    cs = widths[s]
    val = 1 - U[t, j]
    U[t, j] = val
    sg = 1.0 if val else -1.0
    nu[t] += 1 if val else -1
    base = off[k] + j * cs
    for i in range(cs):
        outs[s, i] += sg * imp[base + i]


@njit(cache=True)
def _ls_flip_v_kernel(widths, src, imp, off, V, ins, nv, t, j):
    # flips V[t, j]; updates in-scores of every conv reading map t and the count
    m = widths.size - 1
    val = 1 - V[t, j]
    V[t, j] = val
    sg = 1.0 if val else -1.0
    nv[t] += 1 if val else -1
    ct = widths[t]
    for k in range(m):
        if src[k] == t:
            r_w = widths[k + 1]
            for r in range(r_w):
                ins[k + 1, r] += sg * imp[off[k] + r * ct + j]


@njit(cache=True)
def _ls_swap_kernel(widths, src, imp, off, U, V, ins, outs, nu, nv, maps, nm, j, j2):
    # swaps channels j and j2 (their u and v) on each of the nm maps in maps; its own inverse
    for q in range(nm):
        t = maps[q]
        if U[t, j] != U[t, j2]:
            _ls_flip_u_kernel(widths, src, imp, off, U, outs, nu, t, j)
            _ls_flip_u_kernel(widths, src, imp, off, U, outs, nu, t, j2)
        if V[t, j] != V[t, j2]:
            _ls_flip_v_kernel(widths, src, imp, off, V, ins, nv, t, j)
            _ls_flip_v_kernel(widths, src, imp, off, V, ins, nv, t, j2)


@njit(cache=True)
def _ls_apply_kernel(widths, src, imp, off, res_kind, U, V, ins, outs, nu, nv, t, j, kind):
    if kind == 0:
        _ls_flip_u_kernel(widths, src, imp, off, U, outs, nu, t, j)
        _ls_flip_v_kernel(widths, src, imp, off, V, ins, nv, t, j)
    elif kind == 1:
        _ls_flip_u_kernel(widths, src, imp, off, U, outs, nu, t, j)
    else:
        _ls_flip_v_kernel(widths, src, imp, off, V, ins, nv, t, j)


@njit(cache=True)
def _ls_gain_kernel(U, V, ins, outs, t, j, kind):
    # objective change of the toggle (before applying it)
    g = 0.0
    if kind == 0 or kind == 1:
        g += ins[t, j] if U[t, j] == 0 else -ins[t, j]
    if kind == 0 or kind == 2:
        g += outs[t, j] if V[t, j] == 0 else -outs[t, j]
    return g


@njit(cache=True)
def _ls_kinds_kernel(widths, res_src, res_kind, t, j):
    # number of toggle kinds of channel j of map t: 1 (kind 0 only) or 3 (kinds 0, 1, 2)
    kd = res_kind[t]
    if kd == 0:
        return 1
    if kd == 2 and j >= widths[res_src[t]]:
        return 1
    return 3


@njit(cache=True)
def _ls_resource_kernel(src, cost, lin, nu, nv):
    r = 0.0
    for k in range(cost.size):
        a = nu[k + 1]
        b = nv[src[k]]
        r += cost[k] * a * b + lin[k, 0] * b + lin[k, 1] * a + lin[k, 2]
    return r


@njit(cache=True)
def _ls_is_add_kernel(U, V, t, j, kind):
    # 1 if the toggle switches its bits on (all currently 0), -1 if off (all 1), 0 if mixed
    if kind == 0:
        if U[t, j] == 0 and V[t, j] == 0:
            return 1
        if U[t, j] == 1 and V[t, j] == 1:
            return -1
        return 0
    b = U[t, j] if kind == 1 else V[t, j]
    return 1 if b == 0 else -1


@njit(cache=True)
def _ls_fill_kernel(widths, src, imp, off, cost, lin, res_src, res_kind, budget, U, V, ins, outs, nu, nv, rd, rdn):
    # ratio-greedy: add the valid toggle of best gain / resource increase that fits the budget, until none fits
    m = widths.size - 1
    res = _ls_resource_kernel(src, cost, lin, nu, nv)
    tot = 0.0
    for _step in range(100000):
        best = -1.0
        bt = -1
        bj = -1
        bk = -1
        bg = 0.0
        for t in range(1, m + 1):
            for j in range(widths[t]):
                nk = _ls_kinds_kernel(widths, res_src, res_kind, t, j)
                for kind in range(nk):
                    if _ls_is_add_kernel(U, V, t, j, kind) != 1:
                        continue
                    g = _ls_gain_kernel(U, V, ins, outs, t, j, kind)
                    if g <= 0.0:
                        continue
                    # resource after: counts change at map t (rows of conv t - 1, columns of the readers of t)
                    r2 = res
                    if kind == 0 or kind == 1:
                        r2 += cost[t - 1] * nv[src[t - 1]] + lin[t - 1, 1]
                    if kind == 0 or kind == 2:
                        for q in range(rdn[t]):
                            kk = rd[t, q]
                            r2 += cost[kk] * nu[kk + 1] + lin[kk, 0]
                    if r2 > budget:
                        continue
                    dres = r2 - res
                    ratio = g / dres if dres > 0 else np.inf
                    if ratio <= best:
                        continue
                    # exact resource (the delta above may differ by round-off)
                    if kind == 0 or kind == 1:
                        nu[t] += 1
                    if kind == 0 or kind == 2:
                        nv[t] += 1
                    r2 = _ls_resource_kernel(src, cost, lin, nu, nv)
                    if kind == 0 or kind == 1:
                        nu[t] -= 1
                    if kind == 0 or kind == 2:
                        nv[t] -= 1
                    if r2 > budget:
                        continue
                    # validity (set the bits, check, reset)
                    if kind == 0 or kind == 1:
                        U[t, j] = 1
                    if kind == 0 or kind == 2:
                        V[t, j] = 1
                    ok = _ls_toggle_ok_kernel(widths, res_src, res_kind, U, V, t, j)
                    if kind == 0 or kind == 1:
                        U[t, j] = 0
                    if kind == 0 or kind == 2:
                        V[t, j] = 0
                    if ok:
                        best = ratio
                        bg = g
                        bt = t
                        bj = j
                        bk = kind
        if bt < 0:
            break
        tot += bg
        _ls_apply_kernel(widths, src, imp, off, res_kind, U, V, ins, outs, nu, nv, bt, bj, bk)
        res = _ls_resource_kernel(src, cost, lin, nu, nv)
    return tot


@njit(cache=True)
def _ls_swap_pass_kernel(widths, src, imp, off, res_src, res_kind, U, V, ins, outs, nu, nv):
    # one pass of best swaps per (map, kind) class; returns the total gain
    m = widths.size - 1
    tot = 0.0
    for t in range(1, m + 1):
        for kind in range(3):
            if kind > 0 and res_kind[t] == 0:
                break
            for _rep in range(64):
                ba = -1
                bga = -np.inf
                bd = -1
                bgd = -np.inf
                for j in range(widths[t]):
                    if _ls_kinds_kernel(widths, res_src, res_kind, t, j) <= kind:
                        continue
                    d = _ls_is_add_kernel(U, V, t, j, kind)
                    if d == 0:
                        continue
                    g = _ls_gain_kernel(U, V, ins, outs, t, j, kind)
                    if d == 1 and g <= bga:
                        continue
                    if d == -1 and g <= bgd:
                        continue
                    # validity of the single toggle
                    if kind == 0 or kind == 1:
                        U[t, j] = 1 - U[t, j]
                    if kind == 0 or kind == 2:
                        V[t, j] = 1 - V[t, j]
                    ok = _ls_toggle_ok_kernel(widths, res_src, res_kind, U, V, t, j)
                    if kind == 0 or kind == 1:
                        U[t, j] = 1 - U[t, j]
                    if kind == 0 or kind == 2:
                        V[t, j] = 1 - V[t, j]
                    if not ok:
                        continue
                    if d == 1:
                        bga = g
                        ba = j
                    else:
                        bgd = g
                        bd = j
                if ba < 0 or bd < 0:
                    break
                if bga + bgd <= 1e-12 * (1.0 + abs(bga)):
                    break
                # non-empty layers are kept (counts unchanged); distinct channels: independent validity
                _ls_apply_kernel(widths, src, imp, off, res_kind, U, V, ins, outs, nu, nv, t, bd, kind)
                _ls_apply_kernel(widths, src, imp, off, res_kind, U, V, ins, outs, nu, nv, t, ba, kind)
                tot += bga + bgd
    return tot


@njit(cache=True)
def _ls_stream_pass_kernel(widths, src, imp, off, res_src, res_kind, U, V, ins, outs, nu, nv, comp):
    # exchange channels j and j2 in every map of a residual stream (maps joined by identity shortcuts, comp[t] its
    # id, -1 if none): counts and resource unchanged. Only streams where no conv reads and writes stream maps, so
    # the gain is separable. Returns the total gain.
    m = widths.size - 1
    tot = 0.0
    maps = np.empty(m + 1, np.int64)
    for c in range(m + 1):
        nm = 0
        for t in range(1, m + 1):
            if comp[t] == c:
                maps[nm] = t
                nm += 1
        if nm < 2:
            continue
        sep = True
        for k in range(m):
            if comp[k + 1] == c and src[k] > 0 and comp[src[k]] == c:
                sep = False
        if not sep:
            continue
        w = widths[maps[0]]
        for j in range(w):
            for j2 in range(j + 1, w):
                d = 0.0
                for q in range(nm):
                    t = maps[q]
                    d += (np.int64(U[t, j2]) - np.int64(U[t, j])) * (ins[t, j] - ins[t, j2])
                    d += (np.int64(V[t, j2]) - np.int64(V[t, j])) * (outs[t, j] - outs[t, j2])
                if d <= 1e-12 * (1.0 + abs(tot)):
                    continue
                _ls_swap_kernel(widths, src, imp, off, U, V, ins, outs, nu, nv, maps, nm, j, j2)
                ok = True
                for q in range(nm):
                    t = maps[q]
                    if not (
                        _ls_toggle_ok_kernel(widths, res_src, res_kind, U, V, t, j)
                        and _ls_toggle_ok_kernel(widths, res_src, res_kind, U, V, t, j2)
                    ):
                        ok = False
                if ok:
                    tot += d
                else:
                    _ls_swap_kernel(widths, src, imp, off, U, V, ins, outs, nu, nv, maps, nm, j, j2)
    return tot


@njit(cache=True)
def _ls_init_kernel(widths, src, imp, off, U, V, ins, outs, nu, nv):
    # mutates ins, outs (the scores of _scores_kernel) and nu, nv (kept u / v channels per map)
    _scores_kernel(widths, src, imp, off, U, V, ins, outs)
    nu[:] = 0
    nv[:] = 0
    for t in range(widths.size):
        for j in range(widths[t]):
            nu[t] += U[t, j]
            nv[t] += V[t, j]


@njit(cache=True)
def _local_search_kernel(widths, src, imp, off, cost, lin, res_src, res_kind, budget, U, V, max_rounds, max_drops,
                         kmin):  # fmt: skip
    # mutates U, V (a valid selection within budget) to a local optimum of the moves of the module docstring.
    # kmin (M+1,): the least number of kept channels per map (`Flat.kmin`). Returns the objective.
    m = widths.size - 1
    cmax = U.shape[1]
    ins = np.zeros((m + 1, cmax))
    outs = np.zeros((m + 1, cmax))
    nu = np.zeros(m + 1, np.int64)
    nv = np.zeros(m + 1, np.int64)
    _ls_init_kernel(widths, src, imp, off, U, V, ins, outs, nu, nv)
    obj = _objective_kernel(widths, src, imp, off, U, V)
    SU = U.copy()
    SV = V.copy()
    Sins = ins.copy()
    Souts = outs.copy()
    Snu = nu.copy()
    Snv = nv.copy()
    ntog = 3 * (m + 1) * cmax
    cand_r = np.empty(ntog)
    cand_t = np.empty(ntog, np.int64)
    cand_j = np.empty(ntog, np.int64)
    cand_k = np.empty(ntog, np.int64)
    # residual streams: components of the identity shortcuts (map 0, the fixed input, excluded)
    comp = np.full(m + 1, -1, np.int64)
    for t in range(1, m + 1):
        comp[t] = t
    for _it in range(m + 1):
        ch = False
        for t in range(1, m + 1):
            s = res_src[t]
            if res_kind[t] == 1 and s > 0:
                c = min(comp[t], comp[s])
                if comp[t] != c or comp[s] != c:
                    comp[t] = c
                    comp[s] = c
                    ch = True
        if not ch:
            break
    rd = np.zeros((m + 1, m), np.int64)  # readers of each map
    rdn = np.zeros(m + 1, np.int64)
    for k in range(m):
        rd[src[k], rdn[src[k]]] = k
        rdn[src[k]] += 1
    for _round in range(max_rounds):
        start = obj
        _ls_swap_pass_kernel(widths, src, imp, off, res_src, res_kind, U, V, ins, outs, nu, nv)
        _ls_stream_pass_kernel(widths, src, imp, off, res_src, res_kind, U, V, ins, outs, nu, nv, comp)
        _ls_fill_kernel(widths, src, imp, off, cost, lin, res_src, res_kind, budget, U, V, ins, outs, nu, nv, rd, rdn)
        obj = _objective_kernel(widths, src, imp, off, U, V)
        # drop one kept toggle (the max_drops of least lost objective per saved resource), then fill
        nc = 0
        for t in range(1, m + 1):
            for j in range(widths[t]):
                nk = _ls_kinds_kernel(widths, res_src, res_kind, t, j)
                for kind in range(nk):
                    if _ls_is_add_kernel(U, V, t, j, kind) != -1:
                        continue
                    saved = 0.0
                    if kind == 0 or kind == 1:
                        saved += cost[t - 1] * nv[src[t - 1]] + lin[t - 1, 1]
                    if kind == 0 or kind == 2:
                        for q in range(rdn[t]):
                            kk = rd[t, q]
                            saved += cost[kk] * nu[kk + 1] + lin[kk, 0]
                    if saved <= 0.0:
                        continue
                    loss = -_ls_gain_kernel(U, V, ins, outs, t, j, kind)
                    cand_r[nc] = loss / saved
                    cand_t[nc] = t
                    cand_j[nc] = j
                    cand_k[nc] = kind
                    nc += 1
        corder = np.argsort(cand_r[:nc], kind="mergesort")
        for ci in range(min(nc, max_drops)):
            c = corder[ci]
            t = cand_t[c]
            j = cand_j[c]
            kind = cand_k[c]
            if _ls_is_add_kernel(U, V, t, j, kind) != -1:
                continue
            if kind == 0 or kind == 1:
                if nu[t] <= kmin[t]:
                    continue
            if kind == 0 or kind == 2:
                if nv[t] <= kmin[t]:
                    continue
            SU[:, :] = U
            SV[:, :] = V
            if kind == 0 or kind == 1:
                U[t, j] = 0
            if kind == 0 or kind == 2:
                V[t, j] = 0
            ok = _ls_toggle_ok_kernel(widths, res_src, res_kind, U, V, t, j)
            U[:, :] = SU
            V[:, :] = SV
            if not ok:
                continue
            Sins[:, :] = ins
            Souts[:, :] = outs
            Snu[:] = nu
            Snv[:] = nv
            g = _ls_gain_kernel(U, V, ins, outs, t, j, kind)
            _ls_apply_kernel(widths, src, imp, off, res_kind, U, V, ins, outs, nu, nv, t, j, kind)
            g += _ls_fill_kernel(widths, src, imp, off, cost, lin, res_src, res_kind, budget, U, V, ins, outs,
                                 nu, nv, rd, rdn)  # fmt: skip
            if g > 1e-12 * (1.0 + abs(obj)):
                obj += g
            else:
                U[:, :] = SU
                V[:, :] = SV
                ins[:, :] = Sins
                outs[:, :] = Souts
                nu[:] = Snu
                nv[:] = Snv
        obj = _objective_kernel(widths, src, imp, off, U, V)
        if obj <= start + 1e-12 * (1.0 + abs(start)):
            break
    return obj
