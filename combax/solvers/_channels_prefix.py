r"""Prefix-ranking count DP: an improvement heuristic for the channel QCQP (a primal heuristic; never a bound).

The local search (:mod:`combax.solvers._channels_local`) moves one toggle at a time, so it cannot change several
maps' counts together. This heuristic re-optimises all counts at once:

1. Rank the channels of every map from the current selection (U, V): u-kept channels first, then v-only ones, then
   the rest, each tier by its importance under the selection (its row in its producer over the kept inputs plus its
   columns in its readers over the kept outputs). On a residual target, the channels the shortcut feeds (below C_s,
   in v_s) go last among the kept ones and first among the others, so that the ranks right after any u-prefix can
   join v_t. The current selection is a profile of prefixes of these rankings. Perturbed rankings (a random kept
   channel of some maps moved to the unkept tier) diversify the search.
   The rankings are per map, not shared along residual streams: the u_t of different blocks of a stream are often
   disjoint, so no single order makes them all prefixes; validity comes from the link table below instead.
2. With rankings fixed, a count profile (n_t = |u_t|, m_t = |v_t|, each count from the map's minimum ``kmin[t]`` up)
   defines a selection: u_t and v_t are the top n_t and top m_t channels of map t. Each conv's value at (a outputs, b
   inputs) is a 2D prefix sum of its permuted importance matrix (exact). A DP over the chain of maps (state: the
   count m_t) maximises the sum of the tables minus lam * resource, and lam is found by bisection on the budget, so
   the DP reaches the profiles on the convex hull (smaller budgets, ``BUDGET_SCALES``, give other hull points).
   Residual links are exact where the DP knows the shortcut source's count: the source is the conv's input, or a
   block s -> s+1 -> t = s+2 over a plain inner map (a ResNet basic block; the DP steps over both convs at once).
   There v_t \ u_t must be the ranks n_t..m_t-1 of map t, all of them in v_s (and below C_s for zero_pad). Elsewhere
   the link and the count of a conv whose input is not the previous map are relaxed, and the selection is clamped to
   a valid one.
3. The profile's selection is checked (validity, resource <= budget), completed by the ratio fill and the local
   search, and kept if it beats the best objective so far; then re-rank from the best and repeat.

Complexity per DP: O(sum_k C_t C_s) for plain steps, O(C_t^2 C_s) per exact residual step and O(C_s C_i C_t) per
block; O(log) DPs per bisection, a few bisections per round, plus the fill and local search of each candidate.

This is a heuristic: the result is a valid selection within the budget, never worse than the input, with no
optimality claim; it never changes a bound.
"""

from __future__ import annotations

import time

import numpy as np
from numba import njit

from ._channels_greedy import resource_of
from ._channels_kernels import NEG, _fill_kernel, _objective_kernel, _scores_kernel
from ._channels_layout import Flat
from ._channels_local import _local_search_kernel, _ls_chan_ok_kernel

BUDGET_SCALES = (1.0, 0.99, 0.97, 0.94)  # DP budgets (times the budget): other hull profiles, more left to the fill
TOP_PROFILES = 3  # best feasible profiles of each bisection that are completed and tried
LAM_TOL = 1e-5  # relative width at which the bisection on the budget multiplier stops
ROUNDS = 10
PERTURB = 3  # randomly perturbed rankings per round (besides the plain one)
PATIENCE = 1  # rounds in a row without a gain before stopping
DEMOTE = 0.3  # per map, the chance that a perturbed ranking moves one random u-kept channel to the unkept tier
LS_ROUNDS = 1000  # local search of each candidate, as at the B&B's root
LS_DROPS = 64


@njit(cache=True)
def _prefix_tables_kernel(widths, src, imp, off, P, toff, T):
    # mutates T: T[toff[k] + a (C_s + 1) + b] = sum of conv k's importance over the top a rows (ranking P[t]) and the
    # top b columns (ranking P[s])
    m = widths.size - 1
    for k in range(m):
        t = k + 1
        s = src[k]
        ct = widths[t]
        cs = widths[s]
        base = toff[k]
        for b in range(cs + 1):
            T[base + b] = 0.0
        for a in range(1, ct + 1):
            r = P[t, a - 1]
            row = base + a * (cs + 1)
            T[row] = 0.0
            acc = 0.0
            for b in range(1, cs + 1):
                acc += imp[off[k] + r * cs + P[s, b - 1]]
                T[row + b] = T[row - (cs + 1) + b] + acc


@njit(cache=True)
def _link_table_kernel(widths, res_src, res_kind, P, R, hoff, HI):
    # mutates HI: for an identity / zero_pad target t of source s, HI[hoff[t] + n (C_s + 1) + ms] = the largest m_t
    # such that the ranks n..m_t-1 of map t are all channels below C_s of rank < ms in map s (so that the top m_t
    # of t lie in u_t (top n_t) or v_s (top ms of s)); every valid prefix profile has n_t <= m_t <= HI
    m = widths.size - 1
    for t in range(1, m + 1):
        kd = res_kind[t]
        if kd != 1 and kd != 2:
            continue
        s = res_src[t]
        ct = widths[t]
        cs = widths[s]
        for n in range(ct + 1):
            row = hoff[t] + n * (cs + 1)
            for ms in range(cs + 1):
                HI[row + ms] = n
            mx = -1  # the largest rank in s among ranks n..p of t
            for p in range(n, ct):
                j = P[t, p]
                if j >= cs:
                    break
                r = j if s == 0 else R[s, j]
                if r > mx:
                    mx = r
                # ranks n..p are fine for every ms > mx
                for ms in range(mx + 1, cs + 1):
                    HI[row + ms] = p + 1


@njit(cache=True)
def _cost_at(cost, lin, k, a, b):
    return cost[k] * a * b + lin[k, 0] * b + lin[k, 1] * a + lin[k, 2]


@njit(cache=True)
def _hi_at(widths, res_src, res_kind, hoff, HI, t, n, ms):
    kd = res_kind[t]
    if kd == 0:
        return n
    if kd == 3:
        return widths[t]
    return HI[hoff[t] + n * (widths[res_src[t]] + 1) + ms]


@njit(cache=True)
def _raise_states(val, argn, argb, arga, t, n, hi, x, b, a):
    # raise the DP states m_t = n..hi of map t to x, reached with n outputs from the source count b (and inner count
    # a of a block; -1 otherwise)
    for mm in range(n, hi + 1):
        if x > val[t, mm]:
            val[t, mm] = x
            argn[t, mm] = n
            argb[t, mm] = b
            arga[t, mm] = a


@njit(cache=True)
def _prefix_dp_kernel(widths, src, res_src, res_kind, cost, lin, toff, T, hoff, HI, blk, kmin, lam, prof_n, prof_m):
    # mutates prof_n, prof_m: the profile maximising sum_k T_k - lam cost_k over counts n_t >= kmin[t] (kmin[0] =
    # C_0: the input is whole). Returns (value, T-sum, resource).
    # blk[t] = 1: the block t-2 -> t-1 -> t (identity / zero_pad residual from t-2, plain inner map read by conv t-1
    # only, convs reading their previous map) is one DP step, with the residual link exact.
    m = widths.size - 1
    cmax = 0
    for t in range(m + 1):
        cmax = max(cmax, widths[t])
    A = np.empty(toff[m])  # A = T - lam cost, per conv and (a, b)
    for k in range(m):
        cs = widths[src[k]]
        for a in range(widths[k + 1] + 1):
            for b in range(cs + 1):
                A[toff[k] + a * (cs + 1) + b] = T[toff[k] + a * (cs + 1) + b] - lam * _cost_at(cost, lin, k, a, b)
    col = np.empty(cmax + 1)
    val = np.full((m + 1, cmax + 1), NEG)
    argn = np.full((m + 1, cmax + 1), -1, np.int64)
    argb = np.full((m + 1, cmax + 1), -1, np.int64)  # the source's count (chain), the block input's count (block)
    arga = np.full((m + 1, cmax + 1), -1, np.int64)  # the inner count of a block
    prevarg = np.full(m + 1, -1, np.int64)  # relaxed steps: the state of map t - 1 they continue from
    val[0, widths[0]] = 0.0
    for t in range(1, m + 1):
        k = t - 1
        ct = widths[t]
        if blk[t]:
            s = t - 2
            k1 = t - 2
            ci = widths[t - 1]
            cs = widths[s]
            for ms in range(cs + 1):
                pv = val[s, ms]
                if pv <= NEG / 2:
                    continue
                for a in range(kmin[t - 1], ci + 1):
                    col[a] = A[toff[k1] + a * (cs + 1) + ms]
                for n in range(kmin[t], ct + 1):
                    best = NEG
                    ba = -1
                    row = toff[k] + n * (ci + 1)
                    for a in range(kmin[t - 1], ci + 1):
                        x = col[a] + A[row + a]
                        if x > best:
                            best = x
                            ba = a
                    x = pv + best
                    hi = _hi_at(widths, res_src, res_kind, hoff, HI, t, n, ms)
                    _raise_states(val, argn, argb, arga, t, n, hi, x, ms, ba)
            continue
        s = src[k]
        cs = widths[s]
        chain = s == t - 1
        pconst = NEG
        if not chain:  # relaxed: the conv's input count is free, the DP continues from the best state of map t - 1
            for b in range(widths[t - 1] + 1):
                if val[t - 1, b] > pconst:
                    pconst = val[t - 1, b]
                    prevarg[t] = b
        blo = kmin[s]  # the input (s = 0): kmin[0] = C_0, all of it
        kd = res_kind[t]
        exact = (kd == 1 or kd == 2) and res_src[t] == s and chain
        rs = res_src[t]
        for n in range(kmin[t], ct + 1):
            best = NEG
            bb = -1
            row = toff[k] + n * (cs + 1)
            for b in range(blo, cs + 1):
                pv = val[s, b] if chain else pconst
                if pv <= NEG / 2:
                    continue
                x = pv + A[row + b]
                if exact:
                    hi = _hi_at(widths, res_src, res_kind, hoff, HI, t, n, b)
                    _raise_states(val, argn, argb, arga, t, n, hi, x, b, -1)
                elif x > best:
                    best = x
                    bb = b
            if exact or bb < 0:
                continue
            hi = n
            if kd == 3:
                hi = ct
            elif kd == 1 or kd == 2:  # relaxed: the source keeps all its channels
                hi = _hi_at(widths, res_src, res_kind, hoff, HI, t, n, widths[rs])
            _raise_states(val, argn, argb, arga, t, n, hi, best, bb, -1)
    best = NEG
    mm = -1
    for b in range(widths[m] + 1):
        if val[m, b] > best:
            best = val[m, b]
            mm = b
    if mm < 0:
        return NEG, 0.0, 0.0
    prof_n[0] = widths[0]
    prof_m[0] = widths[0]
    tsum = 0.0
    csum = 0.0
    t = m
    while t > 0:
        k = t - 1
        n = argn[t, mm]
        prof_n[t] = n
        prof_m[t] = mm
        if blk[t]:
            a = arga[t, mm]
            ms = argb[t, mm]
            cs = widths[t - 2]
            ci = widths[t - 1]
            prof_n[t - 1] = a
            prof_m[t - 1] = a
            tsum += T[toff[k - 1] + a * (cs + 1) + ms] + T[toff[k] + n * (ci + 1) + a]
            csum += _cost_at(cost, lin, k - 1, a, ms) + _cost_at(cost, lin, k, n, a)
            mm = ms
            t -= 2
            continue
        b = argb[t, mm]
        cs = widths[src[k]]
        tsum += T[toff[k] + n * (cs + 1) + b]
        csum += _cost_at(cost, lin, k, n, b)
        mm = b if src[k] == t - 1 else prevarg[t]
        t -= 1
    return best, tsum, csum


@njit(cache=True)
def _build_kernel(widths, res_src, res_kind, P, pn, pm, U, V):
    # mutates U, V: u_t = top pn[t], v_t = top pm[t] of map t's ranking, clamped to a valid v (every channel of v_t
    # outside u_t must be fed by the shortcut: below C_s and in v_s; projection: any)
    m = widths.size - 1
    U[:, :] = 0
    V[:, :] = 0
    for j in range(widths[0]):
        U[0, j] = 1
        V[0, j] = 1
    for t in range(1, m + 1):
        kd = res_kind[t]
        s = res_src[t]
        for p in range(pn[t]):
            U[t, P[t, p]] = 1
            V[t, P[t, p]] = 1
        if kd == 0:
            continue
        for p in range(pn[t], pm[t]):
            j = P[t, p]
            if kd == 3 or (j < widths[s] and V[s, j]):
                V[t, j] = 1


@njit(cache=True)
def _valid_kernel(widths, res_src, res_kind, kmin, U, V):
    # 1 if (U, V) is a valid selection: at least kmin[t] channels in u and v, the link rules of every channel (entries
    # beyond a map's width are ignored, as by every kernel)
    m = widths.size - 1
    for t in range(1, m + 1):
        nu = 0
        nv = 0
        for j in range(widths[t]):
            nu += U[t, j]
            nv += V[t, j]
            if _ls_chan_ok_kernel(widths, res_src, res_kind, U, V, t, j) == 0:
                return 0
        if nu < kmin[t] or nv < kmin[t]:
            return 0
    return 1


def is_valid(f: Flat, U, V) -> bool:
    return bool(_valid_kernel(f.widths, f.res_src, f.res_kind, f.kmin, U, V))


def rankings(f: Flat, U, V, rng=None, demote=0.0):
    """(P, R): P[t, :C_t] the channels of map t, best first, R[t, j] the rank of channel j (module docstring, step 1).
    With ``rng``, each map with probability ``demote`` moves one random u-kept channel (of at least two) to the unkept
    tier, where its score ranks it."""
    m = f.widths.size - 1
    ins = np.zeros((m + 1, f.cmax))
    outs = np.zeros((m + 1, f.cmax))
    _scores_kernel(f.widths, f.src, f.imp, f.off, U, V, ins, outs)
    score = ins + outs
    level = U.astype(np.int64) + V.astype(np.int64)
    P = np.zeros((m + 1, f.cmax), np.int64)
    R = np.zeros((m + 1, f.cmax), np.int64)
    P[0, : f.widths[0]] = np.arange(f.widths[0])
    R[0, : f.widths[0]] = np.arange(f.widths[0])
    for t in range(1, m + 1):
        w = int(f.widths[t])
        lev = level[t, :w].copy()
        if rng is not None and rng.random() < demote:
            on = np.flatnonzero(lev == 2)
            if on.size > 1:
                lev[rng.choice(on)] = 0
        if f.res_kind[t] in (1, 2):
            # residual target: channels the shortcut feeds (below C_s, in v_s) after the others of their level, so
            # that the ranks after any u-prefix are fed (v_t \ u_t may take them), before them when not kept
            s = int(f.res_src[t])
            fed = np.zeros(w, np.int64)
            fed[: f.widths[s]] = 1 if s == 0 else V[s, : f.widths[s]]
            lev = 2 * lev + np.where(lev > 0, 1 - fed, fed)
        order = np.lexsort((np.arange(w), -score[t, :w], -lev))
        P[t, :w] = order
        R[t, order] = np.arange(w)
    return P, R


class _Prefix:
    """Tables and DP of one problem; ``profiles`` gives the budget-feasible DP profiles of given rankings."""

    def __init__(self, f: Flat):
        self.f = f
        m = f.widths.size - 1
        self.m = m
        w, src = f.widths, f.src
        sizes = [(w[k + 1] + 1) * (w[src[k]] + 1) for k in range(m)]
        self.toff = np.zeros(m + 1, np.int64)
        self.toff[1:] = np.cumsum(sizes)
        self.T = np.zeros(self.toff[-1])
        hs = [(w[t] + 1) * (w[f.res_src[t]] + 1) if f.res_kind[t] in (1, 2) else 0 for t in range(m + 1)]
        self.hoff = np.zeros(m + 2, np.int64)
        self.hoff[1:] = np.cumsum(hs)
        self.HI = np.zeros(max(int(self.hoff[-1]), 1), np.int64)
        readers = np.bincount(src, minlength=m + 1)
        self.blk = np.zeros(m + 1, np.int64)
        for t in range(2, m + 1):
            i = t - 1
            if (f.res_kind[t] in (1, 2) and f.res_src[t] == t - 2 and src[t - 1] == i and src[t - 2] == t - 2
                    and f.res_kind[i] == 0 and readers[i] == 1):  # fmt: skip
                self.blk[t] = 1

    def set_rankings(self, P, R):
        f = self.f
        self.P = P
        _prefix_tables_kernel(f.widths, f.src, f.imp, f.off, P, self.toff, self.T)
        _link_table_kernel(f.widths, f.res_src, f.res_kind, P, R, self.hoff, self.HI)

    def dp(self, lam):
        f = self.f
        pn = np.zeros(self.m + 1, np.int64)
        pm = np.zeros(self.m + 1, np.int64)
        v, ts, cs = _prefix_dp_kernel(f.widths, f.src, f.res_src, f.res_kind, f.cost, f.lin, self.toff, self.T,
                                      self.hoff, self.HI, self.blk, f.kmin, float(lam), pn, pm)  # fmt: skip
        return v, ts, cs, pn, pm

    def profiles(self, budgets):
        """Per budget (decreasing), the distinct profiles met by the bisection on lam with DP resource <= that
        budget, best DP value first. Each bisection starts from the last one's bracket (the resource of the DP's
        profile does not grow with lam) and stops at a relative width ``LAM_TOL``."""
        seen = {}  # profile -> (T-sum, resource, pn, pm)
        memo = {}

        def run(lam):
            if lam not in memo:
                v, ts, cs, pn, pm = self.dp(lam)
                memo[lam] = None if v <= NEG / 2 else cs
                if v > NEG / 2:
                    seen.setdefault(pn.tobytes() + pm.tobytes(), (ts, cs, pn, pm))
            return memo[lam]

        out = []
        lo, hi = 0.0, 0.0
        for budget in budgets:
            c = run(0.0)
            if c is None:
                return [[] for _ in budgets]
            if c > budget:
                hi = max(hi, lo, 1.0 / max(abs(budget), 1e-300))  # importance ~ O(1) per budget's worth of resource
                while (c := run(hi)) is None or c > budget:
                    lo, hi = hi, hi * 4.0
                    if hi > 1e300:
                        break
                while hi - lo > LAM_TOL * hi:
                    mid = 0.5 * (lo + hi)
                    c = run(mid)
                    if c is not None and c <= budget:
                        hi = mid
                    else:
                        lo = mid
            feas = [x for x in seen.values() if x[1] <= budget]
            out.append(sorted(feas, key=lambda x: -x[0]))
        return out


def improve_by_prefix_dp(f: Flat, budget: float, U, V, rounds: int = ROUNDS, *, perturb: int = PERTURB,
                         patience: int = PATIENCE, demote: float = DEMOTE, seed: int = 0, time_limit=None,
                         budget_scales=BUDGET_SCALES, top: int = TOP_PROFILES):  # fmt: skip
    """Improve the valid selection (U, V) (resource <= ``budget``) by the prefix-ranking count DP (module docstring).

    Each round ranks the channels from the best selection so far (once as they are, and ``perturb`` times with
    random demotions, see :func:`rankings`), runs the count DP at every budget scale and completes the ``top`` best
    profiles of each (ratio fill, then local search). Stops after ``rounds`` rounds, ``patience`` rounds in a row
    without a gain, or ``time_limit`` seconds (checked between rankings). Deterministic for a given ``seed``.

    Returns (U, V, objective): new arrays, the best valid selection found within the budget (a copy of the input
    when nothing beats it) and its objective, recomputed from the masks.
    """
    t0 = time.perf_counter()
    budget = float(budget)
    best_u, best_v = U.copy(), V.copy()
    best = float(_objective_kernel(f.widths, f.src, f.imp, f.off, best_u, best_v))
    ctx = _Prefix(f)
    rng = np.random.default_rng(seed)
    Ub = np.zeros_like(U)
    Vb = np.zeros_like(V)
    seen = set()
    scales = sorted(budget_scales, reverse=True)
    fails = 0
    for _ in range(rounds):
        gained = False
        for q in range(perturb + 1):
            if time_limit is not None and time.perf_counter() - t0 > time_limit:
                break
            P, R = rankings(f, best_u, best_v, rng if q else None, demote)
            ctx.set_rankings(P, R)
            for profs in ctx.profiles([budget * x for x in scales]):
                for _ts, _cs, pn, pm in profs[:top]:
                    _build_kernel(f.widths, f.res_src, f.res_kind, P, pn, pm, Ub, Vb)
                    key = Ub.tobytes() + Vb.tobytes()
                    if key in seen:
                        continue
                    seen.add(key)
                    if not is_valid(f, Ub, Vb) or resource_of(f, Ub, Vb) > budget:
                        continue
                    _fill_kernel(f.widths, f.src, f.imp, f.off, f.cost, f.lin, f.res_src, f.res_kind, budget, Ub, Vb)
                    obj = _local_search_kernel(f.widths, f.src, f.imp, f.off, f.cost, f.lin, f.res_src, f.res_kind,
                                               budget, Ub, Vb, LS_ROUNDS, LS_DROPS, f.kmin)  # fmt: skip
                    if obj > best + 1e-12 * max(1.0, abs(best)) and resource_of(f, Ub, Vb) <= budget:
                        best_u, best_v, best = Ub.copy(), Vb.copy(), float(obj)
                        gained = True
        fails = 0 if gained else fails + 1
        if fails >= patience or (time_limit is not None and time.perf_counter() - t0 > time_limit):
            break
    best = float(_objective_kernel(f.widths, f.src, f.imp, f.off, best_u, best_v))
    return best_u, best_v, best
