"""numba kernels of the channel QCQP: evaluation, the original greedy, and the count bounds of branch-and-bound.

State matrices: ``U[t, j]`` / ``V[t, j]`` (uint8, (M+1, cmax)) hold u and v of map t (row 0: the fixed input).
Arrays are the fields of :class:`combax.solvers._channels_layout.Flat`. No kernel validates its input.
"""

import numpy as np
from numba import njit, prange


@njit(cache=True)
def _derive_v_kernel(widths, res_src, res_kind, U, V):
    # mutates V: the maximal v = u OR v_src (identity, zero_pad below C_src), v = u otherwise
    m = widths.size - 1
    for t in range(1, m + 1):
        for j in range(widths[t]):
            V[t, j] = U[t, j]
        k = res_kind[t]
        if k == 1 or k == 2:
            s = res_src[t]
            for j in range(widths[s]):
                if V[s, j]:
                    V[t, j] = 1


@njit(cache=True)
def _counts_kernel(widths, U, V, n_out, m_in, src):
    # mutates n_out (M,), m_in (M,)
    m = widths.size - 1
    for k in range(m):
        t = k + 1
        s = src[k]
        a = 0
        for j in range(widths[t]):
            a += U[t, j]
        b = 0
        for i in range(widths[s]):
            b += V[s, i]
        n_out[k] = a
        m_in[k] = b


@njit(cache=True)
def _resource_kernel(cost, lin, n_out, m_in):
    r = 0.0
    for k in range(cost.size):
        r += cost[k] * n_out[k] * m_in[k] + lin[k, 0] * m_in[k] + lin[k, 1] * n_out[k] + lin[k, 2]
    return r


@njit(cache=True)
def _objective_kernel(widths, src, imp, off, U, V):
    m = widths.size - 1
    tot = 0.0
    for k in range(m):
        t = k + 1
        s = src[k]
        cs = widths[s]
        for j in range(widths[t]):
            if U[t, j]:
                base = off[k] + j * cs
                for i in range(cs):
                    if V[s, i]:
                        tot += imp[base + i]
    return tot


@njit(cache=True)
def _scores_kernel(widths, src, imp, off, U, V, in_score, out_score):
    # mutates in_score[t, j] = sum_i I_t[j, i] v_src[i] and out_score[s, i] = sum_{readers k} sum_j I_k[j, i] u_{k+1}[j]
    m = widths.size - 1
    in_score[:, :] = 0.0
    out_score[:, :] = 0.0
    for k in range(m):
        t = k + 1
        s = src[k]
        cs = widths[s]
        for j in range(widths[t]):
            base = off[k] + j * cs
            for i in range(cs):
                w = imp[base + i]
                if V[s, i]:
                    in_score[t, j] += w
                if U[t, j]:
                    out_score[s, i] += w


@njit(cache=True)
def _topk_init_kernel(widths, src, imp, off, res_src, res_kind, kmin, kcap, U, V):
    # mutates U, V: block-coordinate ascent over maps t mod 3, each map keeping its top-k channels by their
    # importance to the currently kept neighbours (the original greedy's first phase), k = max(min(kcap, C_t),
    # kmin[t]) (at least the map's minimum). v is derived (u OR v_src): valid. Returns the objective.
    m = widths.size - 1
    cmax = U.shape[1]
    in_score = np.zeros((m + 1, cmax))
    out_score = np.zeros((m + 1, cmax))
    # start: top-k by total incident importance
    U[:, :] = 0
    V[:, :] = 0
    for i in range(widths[0]):
        U[0, i] = 1
        V[0, i] = 1
    for t in range(1, m + 1):
        for j in range(cmax):
            U[t, j] = 1
    _derive_v_kernel(widths, res_src, res_kind, U, V)
    prev = -1.0
    obj = 0.0
    first = True
    for _it in range(100):
        for block in range(3):
            _scores_kernel(widths, src, imp, off, U, V, in_score, out_score)
            for t in range(1, m + 1):
                if t % 3 != block and not first:
                    continue
                kk = max(min(kcap, widths[t]), kmin[t])
                sc = np.empty(widths[t])
                for j in range(widths[t]):
                    sc[j] = in_score[t, j] + out_score[t, j]
                order = np.argsort(-sc, kind="mergesort")
                for j in range(widths[t]):
                    U[t, j] = 0
                for r in range(kk):
                    U[t, order[r]] = 1
            first = False
            _derive_v_kernel(widths, res_src, res_kind, U, V)
        obj = _objective_kernel(widths, src, imp, off, U, V)
        if obj <= prev + 1e-12 * abs(prev):
            break
        prev = obj
    return obj


@njit(cache=True)
def _fill_kernel(widths, src, imp, off, cost, lin, res_src, res_kind, budget, U, V):
    # mutates U, V: ratio-greedy fill. Repeatedly add the channel u_t[j] (with the residual chain it switches on)
    # of best d_objective / d_resource that fits the budget; ties go to the smallest (t, j). Returns the objective.
    m = widths.size - 1
    cmax = U.shape[1]
    in_score = np.zeros((m + 1, cmax))
    out_score = np.zeros((m + 1, cmax))
    _scores_kernel(widths, src, imp, off, U, V, in_score, out_score)
    n_out = np.zeros(m, np.int64)
    m_in = np.zeros(m, np.int64)
    _counts_kernel(widths, U, V, n_out, m_in, src)
    vcount = np.zeros(m + 1, np.int64)
    for t in range(m + 1):
        for j in range(widths[t]):
            vcount[t] += V[t, j]
    res = _resource_kernel(cost, lin, n_out, m_in)
    chain = np.zeros(m + 1, np.int64)
    while True:
        best_ratio = -1.0
        best_t = -1
        best_j = -1
        for t in range(1, m + 1):
            for j in range(widths[t]):
                if U[t, j]:
                    continue
                dobj = in_score[t, j]
                # maps whose v switches on
                nch = 0
                if not V[t, j]:
                    chain[nch] = t
                    nch += 1
                    for tau in range(t + 1, m + 1):
                        kd = res_kind[tau]
                        if (kd == 1 or kd == 2) and j < widths[res_src[tau]] and not V[tau, j]:
                            s = res_src[tau]
                            on = False
                            for q in range(nch):
                                if chain[q] == s:
                                    on = True
                            if on:
                                chain[nch] = tau
                                nch += 1
                for q in range(nch):
                    dobj += out_score[chain[q], j]
                # resource change
                dres = 0.0
                for k in range(m):
                    dn = 1 if k + 1 == t else 0
                    dm = 0
                    for q in range(nch):
                        if chain[q] == src[k]:
                            dm = 1
                    if dn or dm:
                        a = n_out[k] + dn
                        b = m_in[k] + dm
                        dres += cost[k] * (a * b - n_out[k] * m_in[k]) + lin[k, 0] * dm + lin[k, 1] * dn
                if res + dres > budget:
                    continue
                ratio = dobj / dres if dres > 0 else np.inf
                if ratio > best_ratio:
                    best_ratio = ratio
                    best_t = t
                    best_j = j
        if best_t < 0:
            break
        t = best_t
        j = best_j
        # apply: u_t[j] and the chain
        U[t, j] = 1
        nch = 0
        if not V[t, j]:
            chain[nch] = t
            nch += 1
            for tau in range(t + 1, m + 1):
                kd = res_kind[tau]
                if (kd == 1 or kd == 2) and j < widths[res_src[tau]] and not V[tau, j]:
                    s = res_src[tau]
                    for q in range(nch):
                        if chain[q] == s:
                            chain[nch] = tau
                            nch += 1
                            break
        for q in range(nch):
            V[chain[q], j] = 1
        # update scores and counts
        k = t - 1
        s = src[k]
        cs = widths[s]
        for i in range(cs):
            out_score[s, i] += imp[off[k] + j * cs + i]
        for q in range(nch):
            tau = chain[q]
            for kk in range(m):
                if src[kk] == tau:
                    ct = widths[kk + 1]
                    cs2 = widths[tau]
                    for r in range(ct):
                        in_score[kk + 1, r] += imp[off[kk] + r * cs2 + j]
        _counts_kernel(widths, U, V, n_out, m_in, src)
        res = _resource_kernel(cost, lin, n_out, m_in)
    return _objective_kernel(widths, src, imp, off, U, V)


NEG = -1e300
TABLE_CHUNKS = 4  # the count tables' convs run in this many parallel chunks (a few per core)


@njit(cache=True)
def _dp_kernel(widths, src, res_src, res_kind, cost, lin, toff, T, bk, boff, BM, bfrom, nlo, nhi, mlo, mhi, wobj, lam,
               prof_n, prof_m):  # fmt: skip
    # mutates prof_n, prof_m (M+1,): the maximising count profile. Returns (value, T-sum, cost) of
    # max over count profiles of sum_k wobj * T_k(n, m) - lam * cost_k(n, m); value NEG if no profile exists.
    # Residual links are relaxed to a <= m (and m - C_src <= a for zero_pad); a conv whose source is not the
    # previous map sees its source count as free (a relaxation). Where bk[t] >= 0, convs t - 2 and t - 1 form a
    # block (`_channels_blocks`): for inner counts a >= bfrom[bk[t]] their joint value
    # BM[boff[bk[t]] + (b (C_i + 1) + a)(C_t + 1) + a'] (`_block_min`) replaces T_{t-2}(a, b) + T_{t-1}(a', a), and
    # the DP steps from map t - 2 to map t.
    m = widths.size - 1
    cmax = 0
    for t in range(m + 1):
        if widths[t] > cmax:
            cmax = widths[t]
    val = np.full((m + 1, cmax + 1), NEG)
    argb = np.full((m + 1, cmax + 1), -1, np.int64)
    arga = np.full((m + 1, cmax + 1), -1, np.int64)
    argx = np.full((m + 1, cmax + 1), -1, np.int64)  # block input counts of block steps
    val[0, widths[0]] = 0.0
    W = np.empty(cmax + 1)
    for k in range(m):
        t = k + 1
        s = src[k]
        cs = widths[s]
        chain = s == t - 1
        prevbest = NEG
        prevarg = -1
        if not chain:
            for b in range(widths[t - 1] + 1):
                if val[t - 1, b] > prevbest:
                    prevbest = val[t - 1, b]
                    prevarg = b
        for a in range(widths[t] + 1):
            W[a] = NEG
        if bk[t] >= 0:
            _block_step(widths, cost, lin, toff, T, bk, boff, BM, bfrom, nlo, nhi, mlo, mhi, wobj, lam, val, t, W, argb,
                        argx)  # fmt: skip
        else:
            for a in range(nlo[t], nhi[t] + 1):
                best = NEG
                barg = -1
                for b in range(mlo[s], mhi[s] + 1):
                    tv = T[toff[k] + a * (cs + 1) + b]
                    if tv <= NEG / 2:
                        continue
                    pv = val[s, b] if chain else prevbest
                    if pv <= NEG / 2:
                        continue
                    c = cost[k] * a * b + lin[k, 0] * b + lin[k, 1] * a + lin[k, 2]
                    x = pv + wobj * tv - lam * c
                    if x > best:
                        best = x
                        barg = b
                W[a] = best
                argb[t, a] = barg
        kd = res_kind[t]
        if kd == 0:
            for a in range(widths[t] + 1):
                val[t, a] = W[a]
                arga[t, a] = a
        else:
            low = 0
            for mm in range(mlo[t], mhi[t] + 1):
                best = NEG
                aarg = -1
                if kd == 2:
                    low = mm - widths[res_src[t]]
                for a in range(max(low, nlo[t]), min(mm, nhi[t]) + 1):
                    if W[a] > best:
                        best = W[a]
                        aarg = a
                val[t, mm] = best
                arga[t, mm] = aarg
        if not chain:
            # remember where the relaxed predecessor came from
            for a in range(widths[t] + 1):
                if argb[t, a] >= 0:
                    argb[t, a] = argb[t, a] * (cmax + 1) + prevarg
    best = NEG
    marg = -1
    for b in range(widths[m] + 1):
        if val[m, b] > best:
            best = val[m, b]
            marg = b
    if marg < 0:
        return NEG, 0.0, 0.0
    # backtrack
    prof_m[0] = widths[0]
    prof_n[0] = widths[0]
    mm = marg
    tsum = 0.0
    csum = 0.0
    t = m
    while t > 0:
        a = arga[t, mm]
        prof_m[t] = mm
        prof_n[t] = a
        k = t - 1
        if bk[t] >= 0:
            ai = argb[t, a]
            b = argx[t, a]
            if ai >= bfrom[bk[t]]:
                tsum += BM[boff[bk[t]] + (b * (widths[t - 1] + 1) + ai) * (widths[t] + 1) + a]
            else:
                tsum += T[toff[k - 1] + ai * (widths[t - 2] + 1) + b] + T[toff[k] + a * (widths[t - 1] + 1) + ai]
            csum += cost[k] * a * ai + lin[k, 0] * ai + lin[k, 1] * a + lin[k, 2]
            csum += cost[k - 1] * ai * b + lin[k - 1, 0] * b + lin[k - 1, 1] * ai + lin[k - 1, 2]
            prof_m[t - 1] = ai
            prof_n[t - 1] = ai
            mm = b
            t -= 2
            continue
        s = src[k]
        cs = widths[s]
        code = argb[t, a]
        if s == t - 1:
            b = code
            prev = b
        else:
            b = code // (cmax + 1)
            prev = code % (cmax + 1)
        tsum += T[toff[k] + a * (cs + 1) + b]
        csum += cost[k] * a * b + lin[k, 0] * b + lin[k, 1] * a + lin[k, 2]
        mm = prev
        t -= 1
    return best, tsum, csum


@njit(cache=True)
def _block_value(widths, toff, T, boff, BT, bfrom, q, t, b, a, a2):
    # bound of the block q ending at map t (convs t - 2, t - 1) at input count b, inner count a, output count a':
    # the smaller of the block table (where it is filled) and the sum of the two count tables; NEG if impossible
    ci = widths[t - 1]
    t1 = T[toff[t - 2] + a * (widths[t - 2] + 1) + b]
    t2 = T[toff[t - 1] + a2 * (ci + 1) + a]
    if t1 <= NEG / 2 or t2 <= NEG / 2:
        return NEG
    if a >= bfrom[q]:
        return min(BT[boff[q] + (b * (ci + 1) + a) * (widths[t] + 1) + a2], t1 + t2)
    return t1 + t2


@njit(cache=True)
def _block_min(widths, toff, T, bk, boff, BT, bfrom, nlo, nhi, mlo, mhi):
    # the block values `_block_value` of every block at the node's counts where the block table is filled, in BT's
    # layout (the rest is undefined: the DP reads no other entry): computed once per Lagrangian, so that the DPs'
    # block steps read one array
    BM = np.empty(BT.size)
    m = widths.size - 1
    for t in range(m + 1):
        q = bk[t]
        if q < 0:
            continue
        cs = widths[t - 2]
        ci = widths[t - 1]
        co = widths[t]
        for b in range(mlo[t - 2], mhi[t - 2] + 1):
            for a in range(max(nlo[t - 1], bfrom[q]), nhi[t - 1] + 1):
                t1 = T[toff[t - 2] + a * (cs + 1) + b]
                row = boff[q] + (b * (ci + 1) + a) * (co + 1)
                for a2 in range(nlo[t], nhi[t] + 1):
                    t2 = T[toff[t - 1] + a2 * (ci + 1) + a]
                    bt = BT[row + a2]
                    ok = t1 > NEG / 2 and t2 > NEG / 2 and bt > NEG / 2
                    BM[row + a2] = min(bt, t1 + t2) if ok else NEG
    return BM


@njit(cache=True)
def _block_step(widths, cost, lin, toff, T, bk, boff, BM, bfrom, nlo, nhi, mlo, mhi, wobj, lam, val, t, W, argb, argx):
    # W[a'] = max over the block input count b and inner count a of val[t - 2, b] + wobj BT(b, a, a')
    # - lam (cost_{t-2}(a, b) + cost_{t-1}(a', a)), W preset to NEG; argb[t, a'] = a, argx[t, a'] = b. BT(b, a, a')
    # is `_block_value`, read from BM (`_block_min`) where the block table is filled: O(C_s C_i C_t); over the other
    # inner counts the two convs' steps one after the other, O(C_i (C_s + C_t)).
    i = t - 1
    s = t - 2
    k1 = i - 1
    k2 = t - 1
    q = bk[t]
    ci = widths[i]
    cs = widths[s]
    co = widths[t]
    for b in range(mlo[s], mhi[s] + 1):
        pv = val[s, b]
        if pv <= NEG / 2:
            continue
        for a in range(max(nlo[i], bfrom[q]), nhi[i] + 1):
            # conv t - 1's cost, linear in a' at this a
            slope = lam * (cost[k2] * a + lin[k2, 1])
            x1 = (
                pv
                - lam * (cost[k1] * a * b + lin[k1, 0] * b + lin[k1, 1] * a + lin[k1, 2])
                - lam * (lin[k2, 0] * a + lin[k2, 2])
            )
            row = boff[q] + (b * (ci + 1) + a) * (co + 1)
            for a2 in range(nlo[t], nhi[t] + 1):
                bm = BM[row + a2]
                if bm <= NEG / 2:
                    continue
                x = x1 + wobj * bm - slope * a2
                if x > W[a2]:
                    W[a2] = x
                    argb[t, a2] = a
                    argx[t, a2] = b
    for a in range(nlo[i], nhi[i] + 1):
        if a >= bfrom[q]:
            continue
        g = NEG  # the best of conv t - 2 alone at inner count a, from input count g_arg
        g_arg = -1
        for b in range(mlo[s], mhi[s] + 1):
            pv = val[s, b]
            tv = T[toff[k1] + a * (cs + 1) + b]
            if pv <= NEG / 2 or tv <= NEG / 2:
                continue
            x = pv + wobj * tv - lam * (cost[k1] * a * b + lin[k1, 0] * b + lin[k1, 1] * a + lin[k1, 2])
            if x > g:
                g = x
                g_arg = b
        if g_arg < 0:
            continue
        for a2 in range(nlo[t], nhi[t] + 1):
            tv = T[toff[k2] + a2 * (ci + 1) + a]
            if tv <= NEG / 2:
                continue
            x = g + wobj * tv - lam * (cost[k2] * a2 * a + lin[k2, 0] * a + lin[k2, 1] * a2 + lin[k2, 2])
            if x > W[a2]:
                W[a2] = x
                argb[t, a2] = a
                argx[t, a2] = g_arg


LAGRANGE_TOL = 1e-9  # relative distance to the Lagrangian dual's minimum at which its search stops


@njit(cache=True)
def _lagrange_kernel(widths, src, res_src, res_kind, cost, lin, toff, T, bk, boff, BT, bfrom, nlo, nhi, mlo, mhi,
                     budget, lam0, prof_n, prof_m):  # fmt: skip
    # mutates prof_n, prof_m: a budget-feasible maximising profile of the last multiplier tried on the feasible side.
    # Returns (bound, lam): bound = min over the multipliers tried of Phi(lam) = lam B + max_profiles sum T - lam cost,
    # minimised by the tangent-intersection method on this convex piecewise-linear function; NEG if infeasible.
    # lam0 > 0 (e.g. the parent node's minimiser) brackets the minimiser from there instead of from 0 and 1; every
    # lam >= 0 gives a valid bound, so the start only changes the work.
    BM = _block_min(widths, toff, T, bk, boff, BT, bfrom, nlo, nhi, mlo, mhi)
    pn = np.empty_like(prof_n)
    pm = np.empty_like(prof_m)
    lo = -1.0  # lo: cost > budget (slope of Phi < 0); hi: cost <= budget (slope >= 0); -1 = not found yet
    hi = -1.0
    phi_lo = phi_hi = g_lo = g_hi = 0.0
    if lam0 > 0:
        v, tt, cc = _dp_kernel(widths, src, res_src, res_kind, cost, lin, toff, T, bk, boff, BM, bfrom, nlo, nhi, mlo,
                               mhi, 1.0, lam0, pn, pm)  # fmt: skip
        if v <= NEG / 2:
            return NEG, 0.0
        if cc <= budget:
            hi, phi_hi, g_hi = lam0, v + lam0 * budget, budget - cc
            prof_n[:] = pn
            prof_m[:] = pm
            x = lam0
            step = 1.05  # a narrow bracket first: the start is usually close
            for _ in range(4):
                x /= step
                step *= 4.0
                v, tt, cc = _dp_kernel(widths, src, res_src, res_kind, cost, lin, toff, T, bk, boff, BM, bfrom, nlo,
                                       nhi, mlo, mhi, 1.0, x, pn, pm)  # fmt: skip
                if cc > budget:
                    lo, phi_lo, g_lo = x, v + x * budget, budget - cc
                    break
                hi, phi_hi, g_hi = x, v + x * budget, budget - cc
                prof_n[:] = pn
                prof_m[:] = pm
        else:
            lo, phi_lo, g_lo = lam0, v + lam0 * budget, budget - cc
            x = lam0
            step = 1.05
            for _ in range(4):
                x *= step
                step *= 4.0
                v, tt, cc = _dp_kernel(widths, src, res_src, res_kind, cost, lin, toff, T, bk, boff, BM, bfrom, nlo,
                                       nhi, mlo, mhi, 1.0, x, pn, pm)  # fmt: skip
                if cc <= budget:
                    hi, phi_hi, g_hi = x, v + x * budget, budget - cc
                    prof_n[:] = pn
                    prof_m[:] = pm
                    break
                lo, phi_lo, g_lo = x, v + x * budget, budget - cc
    if lo < 0:  # from lam = 0: the unconstrained maximum, if within the budget, is the bound
        v0, t0, c0 = _dp_kernel(widths, src, res_src, res_kind, cost, lin, toff, T, bk, boff, BM, bfrom, nlo, nhi, mlo,
                                mhi, 1.0, 0.0, pn, pm)  # fmt: skip
        if v0 <= NEG / 2:
            return NEG, 0.0
        if c0 <= budget:
            prof_n[:] = pn
            prof_m[:] = pm
            return t0, 0.0
        lo, phi_lo, g_lo = 0.0, v0, budget - c0
    if hi < 0:
        vmin, tm, cm = _dp_kernel(widths, src, res_src, res_kind, cost, lin, toff, T, bk, boff, BM, bfrom, nlo, nhi,
                                  mlo, mhi, 0.0, 1.0, pn, pm)  # fmt: skip
        if cm > budget:
            return NEG, 0.0
        x = max(1.0, 4.0 * lo)
        while True:
            v, tt, cc = _dp_kernel(widths, src, res_src, res_kind, cost, lin, toff, T, bk, boff, BM, bfrom, nlo, nhi,
                                   mlo, mhi, 1.0, x, pn, pm)  # fmt: skip
            if cc <= budget or x > 1e300:
                break
            lo, phi_lo, g_lo = x, v + x * budget, budget - cc
            x *= 4.0
        hi, phi_hi, g_hi = x, v + x * budget, budget - cc
        prof_n[:] = pn
        prof_m[:] = pm
    best = min(phi_lo, phi_hi)
    best_lam = lo if phi_lo < phi_hi else hi
    for _it in range(100):
        if g_lo >= g_hi:
            break
        x = (phi_hi - phi_lo + lo * g_lo - hi * g_hi) / (g_lo - g_hi)
        if not (x > lo and x < hi):
            break
        line = phi_lo + (x - lo) * g_lo  # the tangents' meeting point: no value of Phi is below it
        if best - line <= LAGRANGE_TOL * max(1.0, abs(best)):
            break  # best is within LAGRANGE_TOL of the minimum
        v, tt, cc = _dp_kernel(widths, src, res_src, res_kind, cost, lin, toff, T, bk, boff, BM, bfrom, nlo, nhi, mlo,
                               mhi, 1.0, x, pn, pm)  # fmt: skip
        phi = v + x * budget
        if phi < best:
            best = phi
            best_lam = x
        if phi <= line + 1e-12 * max(1.0, abs(line)):
            break  # the tangents meet on the function: x is a minimiser
        if cc > budget:
            lo = x
            phi_lo = phi
            g_lo = budget - cc
        else:
            hi = x
            phi_hi = phi
            g_hi = budget - cc
            prof_n[:] = pn
            prof_m[:] = pm
    return best, best_lam


@njit(cache=True)
def _set_u(res_kind, FU, FV, t, j, val):
    # mutates FU (and FV for maps that are not residual targets). Returns 0 on a conflict, 1 if changed, 2 if not.
    cur = FU[t, j]
    if cur == val:
        return 2
    if cur != -1:
        return 0
    FU[t, j] = val
    if res_kind[t] == 0:
        FV[t, j] = val
    return 1


@njit(cache=True)
def _set_v(res_kind, FU, FV, t, j, val):
    if t == 0:
        return 2 if val == 1 else 0
    cur = FV[t, j]
    if cur == val:
        return 2
    if cur != -1:
        return 0
    FV[t, j] = val
    if res_kind[t] == 0:
        FU[t, j] = val
    return 1


@njit(cache=True)
def _range_rule(F, t, w, lo, hi):
    # mutates F[t], lo[t], hi[t] from the counts of fixed and free channels. Returns 0 infeasible, 1 changed, 2 not.
    n1 = 0
    nf = 0
    for j in range(w):
        if F[t, j] == 1:
            n1 += 1
        elif F[t, j] == -1:
            nf += 1
    changed = 2
    if lo[t] < n1:
        lo[t] = n1
        changed = 1
    if hi[t] > n1 + nf:
        hi[t] = n1 + nf
        changed = 1
    if lo[t] > hi[t]:
        return 0
    if nf > 0 and (n1 == hi[t] or n1 + nf == lo[t]):
        val = 0 if n1 == hi[t] else 1
        for j in range(w):
            if F[t, j] == -1:
                F[t, j] = val
        changed = 1
    return changed


@njit(cache=True)
def _propagate_kernel(widths, res_src, res_kind, FU, FV, nlo, nhi, mlo, mhi):
    # mutates FU, FV, nlo, nhi, mlo, mhi to a fixpoint of the residual implications and count ranges.
    # Returns 1 if the node may hold a solution, 0 if it is infeasible.
    m = widths.size - 1
    for _it in range(10000):
        changed = False
        for t in range(1, m + 1):
            kd = res_kind[t]
            if kd == 0:
                r = _range_rule(FU, t, widths[t], nlo, nhi)
                if r == 0:
                    return 0
                if r == 1:
                    changed = True
                for j in range(widths[t]):
                    FV[t, j] = FU[t, j]
                mlo[t] = nlo[t]
                mhi[t] = nhi[t]
                continue
            s = res_src[t]
            cs = widths[s]
            for j in range(widths[t]):
                u = FU[t, j]
                v = FV[t, j]
                rs = []
                if kd == 2 and j >= cs:
                    if u != -1 and v != u:
                        rs.append(_set_v(res_kind, FU, FV, t, j, u))
                    elif v != -1 and u != v:
                        rs.append(_set_u(res_kind, FU, FV, t, j, v))
                else:
                    if u == 1:
                        rs.append(_set_v(res_kind, FU, FV, t, j, 1))
                    if v == 0:
                        rs.append(_set_u(res_kind, FU, FV, t, j, 0))
                    if kd == 1 or kd == 2:
                        vs = 1 if s == 0 else FV[s, j]
                        u = FU[t, j]
                        v = FV[t, j]
                        if v == 1 and u == 0:
                            rs.append(_set_v(res_kind, FU, FV, s, j, 1))
                        if vs == 0 and u == 0:
                            rs.append(_set_v(res_kind, FU, FV, t, j, 0))
                        if v == 1 and vs == 0:
                            rs.append(_set_u(res_kind, FU, FV, t, j, 1))
                for r in rs:
                    if r == 0:
                        return 0
                    if r == 1:
                        changed = True
            for F, lo, hi in ((FU, nlo, nhi), (FV, mlo, mhi)):
                r = _range_rule(F, t, widths[t], lo, hi)
                if r == 0:
                    return 0
                if r == 1:
                    changed = True
            # count links: n <= m; m <= n + m_src (identity, zero_pad)
            if mlo[t] < nlo[t]:
                mlo[t] = nlo[t]
                changed = True
            if nhi[t] > mhi[t]:
                nhi[t] = mhi[t]
                changed = True
            if kd == 1 or kd == 2:
                ms_hi = mhi[s] if s > 0 else widths[0]
                if mhi[t] > nhi[t] + ms_hi:
                    mhi[t] = nhi[t] + ms_hi
                    changed = True
                if kd == 2 and nlo[t] < mlo[t] - cs:
                    nlo[t] = mlo[t] - cs
                    changed = True
            if nlo[t] > nhi[t] or mlo[t] > mhi[t]:
                return 0
        if not changed:
            return 1
    return 1


@njit(cache=True)
def _map_scores_kernel(widths, src, imp, off, U, V, in_score, out_score, t):
    # mutates in_score[t], out_score[t]: the entries of _scores_kernel for map t only (same summation order)
    m = widths.size - 1
    k = t - 1
    s = src[k]
    cs = widths[s]
    for j in range(widths[t]):
        in_score[t, j] = 0.0
        out_score[t, j] = 0.0
    for j in range(widths[t]):
        base = off[k] + j * cs
        acc = 0.0
        for i in range(cs):
            if V[s, i]:
                acc += imp[base + i]
        in_score[t, j] = acc
    ct = widths[t]
    for kk in range(m):
        if src[kk] != t:
            continue
        for r in range(widths[kk + 1]):
            if U[kk + 1, r]:
                base = off[kk] + r * ct
                for i in range(ct):
                    out_score[t, i] += imp[base + i]


@njit(cache=True)
def _profile_heuristic_kernel(widths, src, imp, off, res_src, res_kind, FU, FV, n_prof, m_prof, static, U, V, act):
    # mutates U, V (a valid selection with n_t = n_prof[t] kept outputs and at most m_prof[t] kept channels, honouring
    # the u fixings) and act (M,): per-conv objective of it. Alternating top-k sweeps (block ascent), forward order.
    # Returns the objective.
    m = widths.size - 1
    cmax = U.shape[1]
    in_score = np.zeros((m + 1, cmax))
    out_score = np.zeros((m + 1, cmax))
    U[:, :] = 0
    V[:, :] = 0
    for i in range(widths[0]):
        U[0, i] = 1
        V[0, i] = 1
    best_obj = -1.0
    BU = U.copy()
    BV = V.copy()
    for sweep in range(12):
        for t in range(1, m + 1):
            w = widths[t]
            if sweep > 0:
                _map_scores_kernel(widths, src, imp, off, U, V, in_score, out_score, t)
            sc = np.empty(w)
            for j in range(w):
                if sweep == 0:
                    sc[j] = static[t, j]
                else:
                    sc[j] = in_score[t, j] + out_score[t, j]
                if FU[t, j] == 1:
                    sc[j] += 1e300
                elif FU[t, j] == 0:
                    sc[j] = -1e300
            order = np.argsort(-sc, kind="mergesort")
            for j in range(w):
                U[t, j] = 0
            for r in range(n_prof[t]):
                U[t, order[r]] = 1
            if res_kind[t] == 0:
                for j in range(w):
                    V[t, j] = U[t, j]
                continue
            s = res_src[t]
            cnt = 0
            for j in range(w):
                V[t, j] = U[t, j]
                cnt += U[t, j]
            if res_kind[t] == 3:
                continue
            sc2 = np.full(widths[s], -1e300)
            for j in range(widths[s]):
                if V[s, j] and not U[t, j] and FV[t, j] != 0:
                    sc2[j] = (static[t, j] if sweep == 0 else out_score[t, j]) + (1e200 if FV[t, j] == 1 else 0.0)
            order2 = np.argsort(-sc2, kind="mergesort")
            for r in range(widths[s]):
                if cnt >= m_prof[t]:
                    break
                j = order2[r]
                if sc2[j] <= -1e299:
                    break
                V[t, j] = 1
                cnt += 1
        obj = _objective_kernel(widths, src, imp, off, U, V)
        if obj > best_obj + 1e-12 * abs(best_obj):
            best_obj = obj
            BU[:, :] = U
            BV[:, :] = V
        else:
            break
    U[:, :] = BU
    V[:, :] = BV
    for k in range(m):
        t = k + 1
        s = src[k]
        cs = widths[s]
        a = 0.0
        for j in range(widths[t]):
            if U[t, j]:
                for i in range(cs):
                    if V[s, i]:
                        a += imp[off[k] + j * cs + i]
        act[k] = a
    return best_obj


@njit(cache=True)
def _split_fixings(F, t, n, all_one, one, free):
    # indices j < n of map t by fixing F[t, j]: 1 -> one[], -1 (free) -> free[], 0 dropped; all_one treats every
    # index as fixed to 1 (the input map). Returns (#one, #free).
    n1 = 0
    nf = 0
    for j in range(n):
        f = 1 if all_one else F[t, j]
        if f == 1:
            one[n1] = j
            n1 += 1
        elif f == -1:
            free[nf] = j
            nf += 1
    return n1, nf


@njit(cache=True)
def _row_prefix(imp, off_k, cs, rows_one, r1, rows_free, rf, cols_one, c1, cols_free, cf, RO_row, CO_col, scale,
                transpose, vbuf, pref):  # fmt: skip
    # pref[q, r] for the q-th row (fixed-1 rows first, then free rows): RO_row[j] plus, over the fixed-1 columns and
    # the r best free columns, I[j, i] + scale * CO_col[i]. With transpose, rows and columns of I are swapped
    # (I[j, i] read at imp[off_k + i * cs + j]).
    for q in range(r1 + rf):
        j = rows_one[q] if q < r1 else rows_free[q - r1]
        b0 = RO_row[j]
        for p in range(c1):
            i = cols_one[p]
            w = imp[off_k + i * cs + j] if transpose else imp[off_k + j * cs + i]
            b0 += w + scale * CO_col[i]
        for p in range(cf):
            i = cols_free[p]
            w = imp[off_k + i * cs + j] if transpose else imp[off_k + j * cs + i]
            vbuf[p] = w + scale * CO_col[i]
        vs = vbuf[:cf]
        vs.sort()
        pref[q, 0] = b0
        for p in range(cf):
            pref[q, p + 1] = pref[q, p] + vs[cf - 1 - p]


@njit(cache=True)
def _rank_free_rows(pref, r1, rf, r, perm):
    # insertion-sorts perm (the free rows) by pref[r1 + perm[x], r], descending (nearly sorted from column r - 1),
    # and returns the sum of the fixed-1 rows at column r
    fixed = 0.0
    for q in range(r1):
        fixed += pref[q, r]
    for x in range(1, rf):
        pv = perm[x]
        kv = pref[r1 + pv, r]
        y = x - 1
        while y >= 0 and pref[r1 + perm[y], r] < kv:
            perm[y + 1] = perm[y]
            y -= 1
        perm[y + 1] = pv
    return fixed


@njit(cache=True)
def _best_offsets(O_row, one, n1, free, nf, out):
    # out[r] = sum of O over the fixed-1 indices + the r largest O over the free ones (r = 0..nf)
    acc = 0.0
    for p in range(n1):
        acc += O_row[one[p]]
    tmp = np.empty(nf)
    for p in range(nf):
        tmp[p] = O_row[free[p]]
    tmp = -np.sort(-tmp)
    out[0] = acc
    for p in range(nf):
        out[p + 1] = out[p] + tmp[p]


@njit(cache=True, parallel=True)
def _ub_tables_mu_kernel(widths, src, imp, off, FU, FV, toff, T, RO, CO):
    # mutates T: T[toff[k] + a * (C_s + 1) + b] = min(row bound, column bound) of conv k with a kept outputs and
    # b kept inputs under the fixings FU (rows, u of map k+1) and FV (columns, v of map src[k]); NEG if impossible.
    # The objective carries linear offsets: conv k's value of rows A, columns B is
    # sum_{A x B} I + sum_{j in A} RO[k + 1, j] + sum_{i in B} CO[k, i] (Lagrangian decomposition multipliers).
    # Row bound: rows by RO + their top-b sums, plus the best b-set of CO; column bound symmetric. Offsets may be
    # negative.
    m = widths.size - 1
    cmax = 0
    for t in range(m + 1):
        if widths[t] > cmax:
            cmax = widths[t]
    for ch in prange(TABLE_CHUNKS):  # the convs dealt round-robin to parallel chunks (each conv's table is its own)
        for k in range(ch, m, TABLE_CHUNKS):
            _ub_table_mu_conv(widths, src, imp, off, FU, FV, toff, T, RO, CO, k, cmax)


@njit(cache=True)
def _ub_table_mu_conv(widths, src, imp, off, FU, FV, toff, T, RO, CO, k, cmax):
    # conv k's part of `_ub_tables_mu_kernel`
    vbuf = np.empty(cmax)
    pref = np.empty((cmax, cmax + 1))
    perm = np.empty(cmax, np.int64)
    colofs = np.empty(cmax + 1)
    rowofs = np.empty(cmax + 1)
    rows_free = np.empty(cmax, np.int64)
    rows_one = np.empty(cmax, np.int64)
    cols_free = np.empty(cmax, np.int64)
    cols_one = np.empty(cmax, np.int64)
    t = k + 1
    s = src[k]
    ct = widths[t]
    cs = widths[s]
    base = toff[k]
    for q in range(base, base + (ct + 1) * (cs + 1)):
        T[q] = NEG
    r1, rf = _split_fixings(FU, t, ct, False, rows_one, rows_free)
    c1, cf = _split_fixings(FV, s, cs, s == 0, cols_one, cols_free)
    _best_offsets(CO[k], cols_one, c1, cols_free, cf, colofs)
    _best_offsets(RO[t], rows_one, r1, rows_free, rf, rowofs)
    # row bound, every (a, b): fixed-1 rows plus the best free rows at b columns each
    _row_prefix(imp, off[k], cs, rows_one, r1, rows_free, rf, cols_one, c1, cols_free, cf, RO[t], CO[k], 0.0,
                False, vbuf, pref)  # fmt: skip
    for x in range(rf):
        perm[x] = x
    for r in range(cf + 1):
        b = c1 + r
        acc = colofs[r] + _rank_free_rows(pref, r1, rf, r, perm)
        T[base + r1 * (cs + 1) + b] = acc
        for q in range(rf):
            acc += pref[r1 + perm[q], r]
            T[base + (r1 + q + 1) * (cs + 1) + b] = acc
    # column bound, symmetric; T keeps the smaller
    _row_prefix(imp, off[k], cs, cols_one, c1, cols_free, cf, rows_one, r1, rows_free, rf, CO[k], RO[t], 0.0,
                True, vbuf, pref)  # fmt: skip
    for x in range(cf):
        perm[x] = x
    for r in range(rf + 1):
        a = r1 + r
        acc = rowofs[r] + _rank_free_rows(pref, c1, cf, r, perm)
        idx = base + a * (cs + 1) + c1
        if acc < T[idx]:
            T[idx] = acc
        for q in range(cf):
            acc += pref[c1 + perm[q], r]
            idx = base + a * (cs + 1) + c1 + q + 1
            if acc < T[idx]:
                T[idx] = acc


@njit(cache=True)
def _mu_subgrad_kernel(widths, src, imp, off, FU, FV, RO, CO, prof_n, prof_m, rowsel, colsel):
    # mutates rowsel (M+1, cmax) and colsel (M, cmax): for each conv k at the profile's counts (a, b), the rows and
    # columns chosen by the smaller of its row and column bounds (rows: rowsel[k + 1], columns: colsel[k]),
    # fixed-1 first, ties to the lowest index. These give a subgradient of the bound in the multipliers.
    m = widths.size - 1
    rowsel[:, :] = 0.0
    colsel[:, :] = 0.0
    for k in range(m):
        t = k + 1
        s = src[k]
        ct = widths[t]
        cs = widths[s]
        a = prof_n[t]
        b = prof_m[s]
        if a <= 0 or b <= 0:
            continue
        # column ranking (fixed-1 first, fixed-0 excluded) by CO, and row ranking by RO
        csc = np.empty(cs)
        for i in range(cs):
            fv = 1 if s == 0 else FV[s, i]
            csc[i] = -1e300 if fv == 0 else (1e200 if fv == 1 else CO[k, i])
        rsc = np.empty(ct)
        for j in range(ct):
            rsc[j] = -1e300 if FU[t, j] == 0 else (1e200 if FU[t, j] == 1 else RO[t, j])
        # row bound: rows by RO + fixed-1 columns + top free columns; its column set: top b by CO
        rv = np.empty(ct)
        rtrue = np.zeros(ct)
        for j in range(ct):
            if FU[t, j] == 0:
                rv[j] = -1e300
                continue
            vals = np.empty(cs)
            n1 = 0
            for i in range(cs):
                fv = 1 if s == 0 else FV[s, i]
                if fv == 1:
                    vals[i] = 1e200
                    n1 += 1
                elif fv == 0:
                    vals[i] = -1e300
                else:
                    vals[i] = imp[off[k] + j * cs + i]
            srt = -np.sort(-vals)
            acc = RO[t, j]
            for i in range(cs):
                fv = 1 if s == 0 else FV[s, i]
                if fv == 1:
                    acc += imp[off[k] + j * cs + i]
            for p in range(n1, b):
                acc += srt[p]
            rtrue[j] = acc
            rv[j] = acc + (1e200 if FU[t, j] == 1 else 0.0)
        ordr = np.argsort(-rv, kind="mergesort")
        R = 0.0
        for p in range(a):
            R += rtrue[ordr[p]]
        ordco = np.argsort(-csc, kind="mergesort")
        for p in range(b):
            R += CO[k, ordco[p]]
        # column bound
        cv = np.empty(cs)
        ctrue = np.zeros(cs)
        for i in range(cs):
            fv = 1 if s == 0 else FV[s, i]
            if fv == 0:
                cv[i] = -1e300
                continue
            vals = np.empty(ct)
            n1 = 0
            acc = CO[k, i]
            for j in range(ct):
                if FU[t, j] == 1:
                    vals[j] = 1e200
                    n1 += 1
                    acc += imp[off[k] + j * cs + i]
                elif FU[t, j] == 0:
                    vals[j] = -1e300
                else:
                    vals[j] = imp[off[k] + j * cs + i]
            srt = -np.sort(-vals)
            for p in range(n1, a):
                acc += srt[p]
            ctrue[i] = acc
            cv[i] = acc + (1e200 if fv == 1 else 0.0)
        ordc = np.argsort(-cv, kind="mergesort")
        C = 0.0
        for p in range(b):
            C += ctrue[ordc[p]]
        ordro = np.argsort(-rsc, kind="mergesort")
        for p in range(a):
            C += RO[t, ordro[p]]
        if R <= C:
            for p in range(a):
                rowsel[t, ordr[p]] = 1.0
            for p in range(b):
                colsel[k, ordco[p]] = 1.0
        else:
            for p in range(a):
                rowsel[t, ordro[p]] = 1.0
            for p in range(b):
                colsel[k, ordc[p]] = 1.0


@njit(cache=True)
def _fold_side_kernel(imp, off_k, cs, rows_one, r1, rows_free, rf, cols_one, c1, cols_free, cf, RO_row, CO_col, a,
                      transpose, out, vbuf, rowpref, perm):  # fmt: skip
    # the row bound of one conv with the column offsets folded into the rows: for |A| = a,
    # sum_{A x B} I + sum_A RO + sum_B CO = sum_{j in A} (RO_j + sum_{i in B} (I_ji + CO_i / a)). Writes out[r] for
    # b = c1 + r (r = 0..cf). With transpose, rows and columns of I are swapped (imp[off_k + i * cs + j]).
    _row_prefix(imp, off_k, cs, rows_one, r1, rows_free, rf, cols_one, c1, cols_free, cf, RO_row, CO_col, 1.0 / a,
                transpose, vbuf, rowpref)  # fmt: skip
    for x in range(rf):
        perm[x] = x
    for r in range(cf + 1):
        acc = _rank_free_rows(rowpref, r1, rf, r, perm)
        for q in range(a - r1):
            acc += rowpref[r1 + perm[q], r]
        out[r] = acc


@njit(cache=True, parallel=True)
def _ub_tables_fold_kernel(widths, src, imp, off, FU, FV, toff, T, RO, CO, nlo, nhi, mlo, mhi, fa, fb):
    # tightens T (from _ub_tables_mu_kernel, same offsets) by the folded bounds of conv k at a = fa[k] (every b in
    # the node's range; skipped if fa[k] < 0) and at b = fb[k] (every a in range; skipped if fb[k] < 0): the row
    # bound with the column offsets spread over the a rows (CO / a per row), and the column bound with the row
    # offsets spread over the b columns. Both are valid bounds of the augmented conv objective.
    m = widths.size - 1
    cmax = 0
    for t in range(m + 1):
        if widths[t] > cmax:
            cmax = widths[t]
    for ch in prange(TABLE_CHUNKS):  # as in `_ub_tables_mu_kernel`
        for k in range(ch, m, TABLE_CHUNKS):
            if src[k] != 0 and (fa[k] >= 0 or fb[k] >= 0):  # the input is fixed: no column offsets to fold
                _ub_table_fold_conv(widths, src, imp, off, FU, FV, toff, T, RO, CO, nlo, nhi, mlo, mhi, fa, fb, k,
                                    cmax)  # fmt: skip


@njit(cache=True)
def _ub_table_fold_conv(widths, src, imp, off, FU, FV, toff, T, RO, CO, nlo, nhi, mlo, mhi, fa, fb, k, cmax):
    # conv k's part of `_ub_tables_fold_kernel`
    vbuf = np.empty(cmax)
    rowpref = np.empty((cmax, cmax + 1))
    perm = np.empty(cmax, np.int64)
    out = np.empty(cmax + 1)
    rows_free = np.empty(cmax, np.int64)
    rows_one = np.empty(cmax, np.int64)
    cols_free = np.empty(cmax, np.int64)
    cols_one = np.empty(cmax, np.int64)
    t = k + 1
    s = src[k]
    ct = widths[t]
    cs = widths[s]
    base = toff[k]
    r1, rf = _split_fixings(FU, t, ct, False, rows_one, rows_free)
    c1, cf = _split_fixings(FV, s, cs, False, cols_one, cols_free)
    ROt = RO[t]
    COk = CO[k]
    a_lo = max(nlo[t], r1, 1)
    a_hi = min(nhi[t], r1 + rf)
    b_lo = max(mlo[s], c1, 1)
    b_hi = min(mhi[s], c1 + cf)
    a = fa[k]
    if a_lo <= a <= a_hi:  # row a, every b
        _fold_side_kernel(imp, off[k], cs, rows_one, r1, rows_free, rf, cols_one, c1, cols_free, cf, ROt, COk, a,
                          False, out, vbuf, rowpref, perm)  # fmt: skip
        _tighten(T, base + a * (cs + 1), 1, out, c1, b_lo, b_hi)
    b = fb[k]
    if b_lo <= b <= b_hi:  # column b, every a; columns as rows: imp index (row j, col i) = off + j * cs + i, transposed
        _fold_side_kernel(imp, off[k], cs, cols_one, c1, cols_free, cf, rows_one, r1, rows_free, rf, COk, ROt, b,
                          True, out, vbuf, rowpref, perm)  # fmt: skip
        _tighten(T, base + b, cs + 1, out, r1, a_lo, a_hi)


@njit(cache=True)
def _tighten(T, start, stride, vals, first, lo, hi):
    # T[start + x stride] = min(T[...], vals[x - first]) for x in [lo, hi], where T is finite
    for x in range(lo, hi + 1):
        idx = start + x * stride
        v = vals[x - first]
        if T[idx] > NEG / 2 and v < T[idx]:
            T[idx] = v
