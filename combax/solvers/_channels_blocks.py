r"""Block bounds for the channel B&B: two convs around an inner map, bounded jointly.

A *block* is a pair of chain convs ``s -> i -> t`` (conv ``i - 1`` then conv ``t - 1``, with ``s = i - 1``) whose
inner map ``i`` is plain (u = v, not a shortcut source) and read only by the second conv. For a fixed inner set A
(|A| = a), both convs are bounded exactly by sorting:

    F(b, A, a') = sum_{j in A} (RO_i[j] + CO_2[j]) + top_b over columns c of (sum_{j in A} I1[j, c] + CO_1[c])
                                                    + top_a' over rows o of (sum_{j in A} I2[o, j] + RO_t[o]),

fixed-1 columns / rows forced in and fixed-0 ones removed, with the same Lagrangian decomposition offsets (RO, CO) as
the count tables of :mod:`combax.solvers._channels_kernels`. The block table BT(b, a, a') = max over the A of size a
allowed by the fixings of F(b, A, a') bounds conv 1 + conv 2 for every completion with those counts, and is never
above the sum of the two convs' count tables: those let every row choose its own columns, here A is shared. The
kept columns B of the block input and the kept rows of the block output stay free of the rest of the network (as in
the count tables). The DP then steps from the block input's count straight to the block output's count.

Enumeration (`_ub_block_kernel`): all 2^f subsets of the f free inner channels while 2^f <= ``max_all``, in Gray-code
order (one row and one column updated per subset), each O((C_s + C_t) log + C_s C_t): about 40 ms for a 16-wide
ResNet stage-1 block. Wider inner maps get the exact table only for the inner counts near their full width (the sets
that drop at most d free channels), and a valid inexact table for the other counts from parts of the inner map
(`_ub_block_split_kernel`: each part of at most ``part`` channels chooses its own columns and rows, a relaxation
between the exact table and the count tables, where every single row chooses its own; the parts start from vectors
that make the bound exact at a target inner set, the incumbent's). The kernels run their independent pieces (Gray-code
halves, chunks of near-full sets, parts) in parallel; the tables do not depend on the thread count. A table depends
only on the fixings of its three maps and the multipliers, so the B&B caches it.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._channels_kernels import NEG, _split_fixings
from ._channels_layout import Flat

NEAR_CHUNKS = 4  # the near-full inner sets of a block run in this many parallel chunks (a few per core)


def find_blocks(f: Flat, max_width: int) -> np.ndarray:
    """Output maps t of non-overlapping blocks (greedy from the input), inner maps at most ``max_width`` wide."""
    m = f.widths.size - 1
    readers = np.zeros(m + 1, np.int64)
    for k in range(m):
        readers[f.src[k]] += 1
    shortcut_src = set(int(x) for x in f.res_src if x >= 0)
    out = []
    used_until = 0  # convs below this index already belong to a block
    for i in range(1, m):
        t, k1, k2 = i + 1, i - 1, i
        if k1 < used_until:
            continue
        if f.src[k1] != i - 1 or f.src[k2] != i or f.res_kind[i] != 0 or i in shortcut_src or readers[i] != 1:
            continue
        if f.widths[i] > max_width:
            continue
        out.append(t)
        used_until = k2 + 1
    return np.array(out, np.int64)


def block_offsets(f: Flat, outs: np.ndarray) -> np.ndarray:
    """Offsets of each block's (C_s + 1) (C_i + 1) (C_t + 1) table in one flat array."""
    sizes = [(f.widths[t - 2] + 1) * (f.widths[t - 1] + 1) * (f.widths[t] + 1) for t in outs]
    off = np.zeros(len(sizes) + 1, np.int64)
    off[1:] = np.cumsum(sizes)
    return off


@njit(cache=True)
def _top_prefix(vals, one, n1, free, nf, out):
    # out[r] = sum of vals over the fixed-1 indices + the r largest vals over the free ones (r = 0..nf). Reorders
    # free[:nf] by vals, descending (insertion sort from its current order: nearly sorted when the vals changed little
    # since the last call, as between Gray-code neighbours)
    acc = 0.0
    for p in range(n1):
        acc += vals[one[p]]
    for p in range(1, nf):
        j = free[p]
        v = vals[j]
        q = p - 1
        while q >= 0 and vals[free[q]] < v:
            free[q + 1] = free[q]
            q -= 1
        free[q + 1] = j
    out[0] = acc
    for p in range(nf):
        out[p + 1] = out[p] + vals[free[p]]


@njit(cache=True)
def _block_entries(const, colsum, rowsum, a, c_one, c1, c_free, cf, r_one, r1, r_free, rf, blo, bhi, alo, ahi, ci,
                   co, f1, f2, BT, base):  # fmt: skip
    # raise BT(b, a, a') to F(b, A, a') for one inner set A of size a given by its sums (module docstring); reorders
    # c_free and r_free
    _top_prefix(colsum, c_one, c1, c_free, cf, f1)
    _top_prefix(rowsum, r_one, r1, r_free, rf, f2)
    g2 = f2[alo - r1 : ahi - r1 + 1]
    n2 = ahi - alo + 1
    for b in range(blo, bhi + 1):
        x = const + f1[b - c1]
        dst = BT[base + (b * (ci + 1) + a) * (co + 1) + alo :][:n2]
        for p in range(n2):
            dst[p] = max(dst[p], x + g2[p])


@njit(cache=True)
def _n_sets(n, d):
    # sum_{r <= d} C(n, r)
    tot = 0
    c = 1
    for r in range(d + 1):
        tot += c
        c = c * (n - r) // (r + 1)
    return tot


@njit(cache=True)
def block_plan(n_one, n_free, max_all, max_near):
    """(lo, d): the inner counts a >= lo where a block table is exact, given the inner map's fixed-1 and free
    channels, and the number d of free channels its enumerated sets drop at most (-1: every subset). Every subset
    while 2^f <= max_all, else the largest d with sum_{r <= d} C(f, r) <= max_near."""
    if n_free < 62 and (1 << n_free) <= max_all:
        return 0, -1
    d = 0
    while d < n_free and _n_sets(n_free, d + 1) <= max_near:
        d += 1
    return n_one + n_free - d, d


@njit(cache=True)
def _toggle_inner(widths, imp, off, RO, CO, t, j, sign, colsum, rowsum):
    # add (sign 1) or remove (sign -1) inner channel j of the block ending at map t: its row of conv 1 to the column
    # sums, its column of conv 2 to the row sums; returns the change of the sets' offset sum
    i = t - 1
    cs = widths[t - 2]
    ci = widths[i]
    o1 = off[i - 1]
    o2 = off[t - 1]
    for c in range(cs):
        colsum[c] += sign * imp[o1 + j * cs + c]
    for o in range(widths[t]):
        rowsum[o] += sign * imp[o2 + o * ci + j]
    return sign * (RO[i, j] + CO[t - 1, j])


@njit(cache=True)
def _block_fixings(widths, FU, FV, t):
    # the fixed-1 and free channels of the block's inner map (in_), input map columns (c_) and output map rows (r_)
    cmax = max(widths[t - 2], max(widths[t - 1], widths[t]))
    in_one = np.empty(cmax, np.int64)
    in_free = np.empty(cmax, np.int64)
    c_one = np.empty(cmax, np.int64)
    c_free = np.empty(cmax, np.int64)
    r_one = np.empty(cmax, np.int64)
    r_free = np.empty(cmax, np.int64)
    n1, nf = _split_fixings(FU, t - 1, widths[t - 1], False, in_one, in_free)
    c1, cf = _split_fixings(FV, t - 2, widths[t - 2], t - 2 == 0, c_one, c_free)
    r1, rf = _split_fixings(FU, t, widths[t], False, r_one, r_free)
    return in_one, n1, in_free, nf, c_one, c1, c_free, cf, r_one, r1, r_free, rf


@njit(cache=True)
def _gray_sets(widths, imp, off, RO, CO, t, free, n, a0, a_lo, a_hi, const, colsum, rowsum, c_one, c1, c_free, cf,
               r_one, r1, r_free, rf, blo, bhi, alo, ahi, width, out, base):  # fmt: skip
    # every subset X of the n channels free[:n], in Gray-code order (one channel in or out per step), added to the
    # set whose sums are (const, colsum, rowsum) and size a0: raises the table `out` (inner dimension `width`) at
    # the sizes a0 + |X| within [a_lo, a_hi]. Mutates the sums.
    a = a0
    mask = 0
    f1 = np.empty(widths[t - 2] + 1)
    f2 = np.empty(widths[t] + 1)
    for step in range(1 << n):
        if step > 0:
            p = 0
            while not (step >> p) & 1:
                p += 1
            sign = -1.0 if (mask >> p) & 1 else 1.0
            mask ^= 1 << p
            a += 1 if sign > 0 else -1
            const += _toggle_inner(widths, imp, off, RO, CO, t, free[p], sign, colsum, rowsum)
        if a_lo <= a <= a_hi:
            _block_entries(const, colsum, rowsum, a, c_one, c1, c_free, cf, r_one, r1, r_free, rf, blo, bhi, alo,
                           ahi, width, widths[t], f1, f2, out, base)  # fmt: skip


@njit(cache=True, parallel=True)
def _ub_block_kernel(widths, imp, off, FU, FV, RO, CO, t, BT, base, max_all, max_near, b_lo, b_hi, o_lo, o_hi):
    # mutates BT[base : base + (C_s + 1)(C_i + 1)(C_t + 1)]: BT[(b (C_i + 1) + a)(C_t + 1) + a'] of the block ending
    # at map t (see the module docstring), for every inner count, the input counts b in [b_lo, b_hi] and the output
    # counts a' in [o_lo, o_hi] (NEG at the other b and a': filled only where the nodes that read it may be). Returns
    # lo: BT is exact for the inner counts a >= lo (NEG where no completion has those counts, or a map would be empty)
    # and NEG below. With f free inner channels, every subset is enumerated when 2^f <= max_all (lo = 0); otherwise
    # the inner sets that drop at most d free channels, the largest d with sum_{r <= d} C(f, r) <= max_near
    # (lo = #fixed-1 + f - d). See `block_plan`.
    i = t - 1
    s = t - 2
    cs = widths[s]
    ci = widths[i]
    co = widths[t]
    in_one, n1, in_free, nf, c_one, c1, c_free, cf, r_one, r1, r_free, rf = _block_fixings(widths, FU, FV, t)
    colsum = CO[i - 1, :cs].copy()  # the sums of the fixed-1 inner channels, with the outer maps' offsets
    rowsum = RO[t, :co].copy()
    const = 0.0
    for p in range(n1):
        const += _toggle_inner(widths, imp, off, RO, CO, t, in_one[p], 1.0, colsum, rowsum)
    blo = max(1, c1, b_lo)
    bhi = min(c1 + cf, b_hi)
    alo = max(1, r1, o_lo)
    ahi = min(r1 + rf, o_hi)
    lo, d = block_plan(n1, nf, max_all, max_near)
    size = (cs + 1) * (ci + 1) * (co + 1)
    if d < 0:
        # every subset, in two Gray-code halves run in parallel: without and with the last free channel (the halves
        # are fixed, not one per thread, so the tables do not depend on the thread count)
        h = 1 if nf > 0 else 0
        parts = np.full((h + 1, size), NEG)
        for with_last in prange(h + 1):
            cs_h = colsum.copy()
            rs_h = rowsum.copy()
            x = const
            if with_last:
                x += _toggle_inner(widths, imp, off, RO, CO, t, in_free[nf - 1], 1.0, cs_h, rs_h)
            _gray_sets(widths, imp, off, RO, CO, t, in_free, nf - h, n1 + with_last, 1, ci, x, cs_h, rs_h, c_one, c1,
                       c_free.copy(), cf, r_one, r1, r_free.copy(), rf, blo, bhi, alo, ahi, ci, parts[with_last],
                       0)  # fmt: skip
        _max_into(parts, BT, base)
        return lo
    # the inner sets that drop at most d free channels, each from the sums over all of them, dealt round-robin to
    # NEAR_CHUNKS chunks run in parallel (each set is computed alone: the tables do not depend on the chunking)
    for p in range(nf):
        const += _toggle_inner(widths, imp, off, RO, CO, t, in_free[p], 1.0, colsum, rowsum)
    nth = NEAR_CHUNKS
    parts = np.full((nth, size), NEG)
    for th in prange(nth):
        f1 = np.empty(cs + 1)
        f2 = np.empty(co + 1)
        cfr = c_free.copy()
        rfr = r_free.copy()
        idx = np.empty(max(d, 1), np.int64)
        cs_drop = np.empty(cs)
        rs_drop = np.empty(co)
        n_set = 0
        for r in range(d + 1):
            a = n1 + nf - r
            if a < 1:
                continue
            for p in range(r):
                idx[p] = p
            while True:
                if n_set % nth == th:
                    x = const
                    cs_drop[:] = colsum
                    rs_drop[:] = rowsum
                    for p in range(r):
                        x += _toggle_inner(widths, imp, off, RO, CO, t, in_free[idx[p]], -1.0, cs_drop, rs_drop)
                    _block_entries(x, cs_drop, rs_drop, a, c_one, c1, cfr, cf, r_one, r1, rfr, rf, blo, bhi, alo, ahi,
                                   ci, co, f1, f2, parts[th], 0)  # fmt: skip
                n_set += 1
                p = r - 1  # next r-combination of the free channels
                while p >= 0 and idx[p] == nf - r + p:
                    p -= 1
                if p < 0:
                    break
                idx[p] += 1
                for q in range(p + 1, r):
                    idx[q] = idx[q - 1] + 1
    _max_into(parts, BT, base)
    return lo


@njit(cache=True)
def _max_into(parts, BT, base):
    # BT[base + q] = max over the rows of parts of parts[:, q]
    for q in range(parts.shape[1]):
        v = parts[0, q]
        for h in range(1, parts.shape[0]):
            if parts[h, q] > v:
                v = parts[h, q]
        BT[base + q] = v


@njit(cache=True, parallel=True)
def _ub_block_split_kernel(widths, imp, off, FU, FV, RO, CO, t, part, out, b_lo, b_hi, o_lo, o_hi, target):
    # mutates out ((C_s + 1)(C_i + 1)(C_t + 1),), laid out as BT: a valid but inexact block table for every inner
    # count, b in [b_lo, b_hi] and a' in [o_lo, o_hi] (NEG elsewhere). The free inner channels are split into
    # consecutive parts of at most `part`; each part's sets are enumerated (Gray code) into a part table
    # PT_h(b, x, a') = max over x-sets of the part of F restricted to them, and BT(b, a, a') <= max over
    # x_1 + ... + x_H = a - #fixed-1 of sum_h PT_h(b, x_h, a'): the top-b sum (and the top-a' sum) of a sum of vectors
    # is at most the sum of their top-b sums, fixed-1 entries being linear. The offsets and the fixed-1 inner
    # channels' sums (the base) are split among the parts as start vectors that add up to the base; with a target
    # inner set (`target[j]` = 1; e.g. the incumbent's) that holds k_h of part h's free channels, part h starts from
    # S k_h / k - S_h (S_h: the target's sums in part h, S: the base plus all of them), so that at the target every
    # part's sums are proportional and the bound is exact there; without one (k = 0) part 0 takes the base.
    # O(H 2^part (C_s C_t + (C_s + C_t) log) + H C_s C_i^2 C_t).
    i = t - 1
    cs = widths[t - 2]
    ci = widths[i]
    co = widths[t]
    in_one, n1, in_free, nf, c_one, c1, c_free, cf, r_one, r1, r_free, rf = _block_fixings(widths, FU, FV, t)
    blo = max(1, c1, b_lo)
    bhi = min(c1 + cf, b_hi)
    alo = max(1, r1, o_lo)
    ahi = min(r1 + rf, o_hi)
    n_parts = max(1, (nf + part - 1) // part)
    start_c = np.zeros((n_parts, cs))  # the parts' start vectors of the column and row sums
    start_r = np.zeros((n_parts, co))
    start_c[0] = CO[i - 1, :cs]
    start_r[0] = RO[t, :co]
    const = 0.0
    for p in range(n1):
        const += _toggle_inner(widths, imp, off, RO, CO, t, in_one[p], 1.0, start_c[0], start_r[0])
    k_part = np.zeros(n_parts)
    tgt_c = np.zeros((n_parts, cs))
    tgt_r = np.zeros((n_parts, co))
    for h in range(n_parts):
        for p in range(h * part, min(nf, (h + 1) * part)):
            if target[in_free[p]]:
                _toggle_inner(widths, imp, off, RO, CO, t, in_free[p], 1.0, tgt_c[h], tgt_r[h])
                k_part[h] += 1
    k = k_part.sum()
    if n_parts > 1 and k > 0:
        tot_c = start_c[0] + tgt_c.sum(axis=0)
        tot_r = start_r[0] + tgt_r.sum(axis=0)
        for h in range(n_parts):
            start_c[h] = tot_c * (k_part[h] / k) - tgt_c[h]
            start_r[h] = tot_r * (k_part[h] / k) - tgt_r[h]
    pts = np.full((n_parts, (cs + 1) * (part + 1) * (co + 1)), NEG)  # part h's table, inner dimension its size
    for h in prange(n_parts):  # the parts' sets are enumerated in parallel
        sz = min(part, nf - h * part)
        _gray_sets(widths, imp, off, RO, CO, t, in_free[h * part :], sz, 0, 0, sz, const if h == 0 else 0.0,
                   start_c[h].copy(), start_r[h].copy(), c_one, c1, c_free.copy(), cf, r_one, r1, r_free.copy(), rf,
                   blo, bhi, alo, ahi, sz, pts[h], 0)  # fmt: skip
    cur = np.full((cs + 1) * (ci + 1) * (co + 1), NEG)  # the combined table of the parts so far, over x = a - n1
    nxt = np.empty_like(cur)
    done = 0  # free channels in the parts so far
    for h in range(n_parts):
        sz = min(part, nf - done)
        pt = pts[h]
        if h == 0:
            for b in range(blo, bhi + 1):
                for xx in range(sz + 1):
                    src = (b * (sz + 1) + xx) * (co + 1)
                    dst = (b * (ci + 1) + xx) * (co + 1)
                    for a2 in range(alo, ahi + 1):
                        cur[dst + a2] = pt[src + a2]
        else:
            nxt[:] = NEG
            for b in range(blo, bhi + 1):
                for y in range(done + 1):
                    row_y = (b * (ci + 1) + y) * (co + 1)
                    for xx in range(sz + 1):
                        row_x = (b * (sz + 1) + xx) * (co + 1)
                        row_n = (b * (ci + 1) + y + xx) * (co + 1)
                        for a2 in range(alo, ahi + 1):
                            v = cur[row_y + a2] + pt[row_x + a2]
                            if v > nxt[row_n + a2]:
                                nxt[row_n + a2] = v
            cur, nxt = nxt, cur
        done += sz
    for q in range(out.size):
        out[q] = NEG
    for b in range(blo, bhi + 1):
        for y in range(1 if n1 == 0 else 0, nf + 1):  # no empty inner map
            src = (b * (ci + 1) + y) * (co + 1)
            dst = (b * (ci + 1) + n1 + y) * (co + 1)
            for a2 in range(alo, ahi + 1):
                v = cur[src + a2]
                out[dst + a2] = v if v > NEG / 2 else NEG
