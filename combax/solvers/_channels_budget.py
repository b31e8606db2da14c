r"""Budget-exact count DP: the channel B&B's bound without dualising the budget (rounded resource units).

The Lagrangian count DP (:func:`combax.solvers._channels_kernels._lagrange_kernel`) bounds

    max over count profiles p of sum_k T_k(p)   s.t.   sum_k c_k(p) <= B

by min over lam >= 0 of max_p sum_k T_k(p) - lam (c_k(p) - B), which can exceed the constrained maximum by up to the
budget term lam (B - c(p)) of its profile (the duality gap of the budget). On small networks, where a count step moves
a large share of the resource, that gap can be most of the bound's gap. This DP keeps the resource as a second state:

    each DP step (a conv, or a block of two convs) costs q = floor((c_step - cmin_step) / unit) units, where cmin_step
    is the step's smallest cost over the node's count ranges, and a profile is allowed when its units sum to at most
    R = floor((B - sum cmin) / unit).

Rounding every step down only enlarges the set of allowed profiles (sum floor(x) <= floor(sum x)), so the value is a
valid upper bound for every unit; a smaller unit is tighter. The DP is the Lagrangian DP's (same tables, block steps,
residual relaxations) with a resource axis: O(R sum_steps |pairs of counts|) time, O(R C) memory.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._channels_kernels import NEG, _block_value


@njit(cache=True)
def _step_cost(cost, lin, k, a, b):
    return cost[k] * a * b + lin[k, 0] * b + lin[k, 1] * a + lin[k, 2]


@njit(cache=True)
def _units(x, unit):
    # floor(x / unit), rounded down a little more against round-off (rounding down only relaxes)
    q = x / unit
    q -= 1e-9 * (1.0 + abs(q))
    return max(int(np.floor(q)), 0)


@njit(cache=True)
def step_minima(src, cost, lin, nlo, mlo, out):
    # out[k]: the smallest cost of conv k over the node's count ranges (costs grow with the counts: c, c_in, c_out
    # >= 0), the counts of the inner map of a block included
    m = src.size
    for k in range(m):
        t = k + 1
        s = src[k]
        out[k] = _step_cost(cost, lin, k, nlo[t], mlo[s])


@njit(cache=True)
def budget_dp_kernel(widths, src, res_src, res_kind, cost, lin, toff, T, bk, boff, BT, bfrom, nlo, nhi, mlo, mhi,
                     cmin, unit, R):  # fmt: skip
    # max over count profiles of sum_k T_k whose rounded step costs (module docstring) sum to at most R units; NEG if
    # none. A block's value is `_block_value` (the smaller of its table, where filled, and its two count tables).
    m = widths.size - 1
    cmax = 0
    for t in range(m + 1):
        if widths[t] > cmax:
            cmax = widths[t]
    # val[t % 3, n, r]: the best sum of the tables up to map t with m_t = n and r units; a step reads map t - 1 or
    # t - 2 (a block), so three layers suffice
    val = np.full((3, cmax + 1, R + 1), NEG)
    val[0, widths[0], 0] = 0.0
    W = np.empty((cmax + 1, R + 1))
    prev = np.empty(R + 1)
    t = 1
    while t <= m:
        k = t - 1
        if t + 1 <= m and bk[t + 1] >= 0:  # the inner map of a block: stepped over by the block
            t += 1
            continue
        W[:, :] = NEG
        if bk[t] >= 0:
            s = t - 2
            k1 = k - 1
            c0 = cmin[k1] + cmin[k]
            for b in range(mlo[s], mhi[s] + 1):
                for a in range(nlo[t - 1], nhi[t - 1] + 1):
                    for a2 in range(nlo[t], nhi[t] + 1):
                        v = _block_value(widths, toff, T, boff, BT, bfrom, bk[t], t, b, a, a2)
                        if v <= NEG / 2:
                            continue
                        qq = _units(_step_cost(cost, lin, k1, a, b) + _step_cost(cost, lin, k, a2, a) - c0, unit)
                        for r in range(R + 1 - qq):
                            pv = val[s % 3, b, r]
                            if pv > NEG / 2 and pv + v > W[a2, r + qq]:
                                W[a2, r + qq] = pv + v
        else:
            s = src[k]
            cs = widths[s]
            chain = s == t - 1
            if not chain:  # the conv's input count is free (as in the Lagrangian DP): the best state of map t - 1
                prev[:] = NEG
                for b in range(widths[t - 1] + 1):
                    for r in range(R + 1):
                        if val[(t - 1) % 3, b, r] > prev[r]:
                            prev[r] = val[(t - 1) % 3, b, r]
            for a in range(nlo[t], nhi[t] + 1):
                for b in range(mlo[s], mhi[s] + 1):
                    tv = T[toff[k] + a * (cs + 1) + b]
                    if tv <= NEG / 2:
                        continue
                    qq = _units(_step_cost(cost, lin, k, a, b) - cmin[k], unit)
                    for r in range(R + 1 - qq):
                        pv = val[s % 3, b, r] if chain else prev[r]
                        if pv > NEG / 2 and pv + tv > W[a, r + qq]:
                            W[a, r + qq] = pv + tv
        kd = res_kind[t]
        cur = val[t % 3]
        if kd == 0:
            cur[:, :] = W
        else:
            cur[:, :] = NEG
            low = 0
            for mm in range(mlo[t], mhi[t] + 1):
                if kd == 2:
                    low = mm - widths[res_src[t]]
                for a in range(max(low, nlo[t]), min(mm, nhi[t]) + 1):
                    for r in range(R + 1):
                        if W[a, r] > cur[mm, r]:
                            cur[mm, r] = W[a, r]
        t += 1
    best = NEG
    for b in range(widths[m] + 1):
        for r in range(R + 1):
            if val[m % 3, b, r] > best:
                best = val[m % 3, b, r]
    return best


def work_of(widths, src, bk, nlo, nhi, mlo, mhi) -> int:
    """Count pairs (and block triples) the DP visits per resource unit."""
    m = len(widths) - 1
    tot = 0
    t = 1
    while t <= m:
        if t + 1 <= m and bk[t + 1] >= 0:
            t += 1
            continue
        if bk[t] >= 0:
            tot += int(mhi[t - 2] - mlo[t - 2] + 1) * int(nhi[t - 1] - nlo[t - 1] + 1) * int(nhi[t] - nlo[t] + 1)
        else:
            s = src[t - 1]
            tot += int(nhi[t] - nlo[t] + 1) * int(mhi[s] - mlo[s] + 1)
        t += 1
    return tot
