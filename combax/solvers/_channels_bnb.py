r"""Exact branch-and-bound for the channel QCQP (combax's own; design of spec section 5a).

Node: fixings of the binaries (``FU[t, j]``, ``FV[t, j]`` in {-1 free, 0, 1}) and count ranges ``[nlo, nhi]`` of
``n_t = |u_t|`` and ``[mlo, mhi]`` of ``m_t = |v_t|``.

Bound of a node (valid for every completion):

1. per conv l and every count pair (a, b): UB_l(a, b) = min(R, C), the row bound R (each row's fixed-1 columns plus its
   top b - |fixed-1| free columns; fixed-1 rows forced in, then the top a - |fixed-1| free rows) and the symmetric
   column bound C; fixed-0 rows and columns removed. O(C_l C_s log) per conv.
2. the Lagrangian of the budget, minimised over lam >= 0 by the tangent-intersection method on the convex piecewise
   linear Phi(lam) = lam B + max over count profiles of sum_l UB_l(n_l, m_s) - lam cost_l(n_l, m_s), where the max is a
   DP over the chain of maps whose state is the current map's count (O(sum_l C_l C_s) per lam). Residual links are
   relaxed to n_t <= m_t <= n_t + m_s in the propagation and n_t <= m_t in the DP.
3. Lagrangian decomposition multipliers (chosen once, at the root; valid at every node): the objective is augmented
   by terms that are zero or >= 0 on every valid selection (u_t = v_t on plain maps, v_t - u_t >= 0 and
   u_t + v_s - v_t >= 0 on residual targets), each u / v term moved into the table of the conv that holds the
   variable as a row or a column. The tables then bound the augmented per-conv objective (the row bound adds the best
   offset sum of b columns, the column bound that of a rows). Two candidates, the one with the lower root bound (with
   4. and 5.) kept: multipliers read from the approximate duals of the F1 LP relaxation (:mod:`combax.solvers.
   _channels_lp`, first-order PDHG run in ``LP_STAGES``, the root re-bounded after each while it stays open, the
   stage with the lower root bound kept; `_Ctx.lp_multipliers`), and subgradient steps on the bound without blocks
   (`_Ctx.optimize_multipliers`, run only when the first leaves the root open). The LP duals also prove a bound of
   the whole problem, which caps every node's bound and the reported one. On ResNet-20 at 50 % FLOPs the LP's
   multipliers give a root bound of 433.11 against the subgradient's 433.62 (optimum >= 432.895); at 70 % they prove
   the optimum at the root after 1,000 PDHG iterations; at 30 % the subgradient's are the better ones.
4. Folded bounds (with multipliers): for |A| = a the column offsets can be spread over the rows, sum_{A x B} I +
   sum_A RO + sum_B CO = sum_{j in A} (RO_j + sum_{i in B} (I_ji + CO_i / a)), so the row bound of I + CO / a (and
   symmetrically the column bound of I + RO / b) also bounds the entry (a, b). O(C_l C_s log) per a (per b), so it
   is applied lazily: to the rows a and columns b of the DP's profile, re-solving the Lagrangian until the profile
   uses only tightened entries (at most ``FOLD_ROUNDS`` times).
5. Block bounds (with multipliers, once they are chosen): two chain convs around a plain inner map with a single
   reader are bounded jointly by enumerating inner sets (:mod:`combax.solvers._channels_blocks`): all of them while
   there are at most ``BLOCK_ALL``, else those that drop at most d free channels, at most ``BLOCK_NEAR`` sets (exact
   for the inner counts near the full width), and for the other counts a table from parts of ``BLOCK_PART``
   channels at the root and ``NODE_PART`` below it, each part choosing its own columns and rows (from start vectors
   that make the table exact at the root incumbent's inner set). Smaller parts give looser tables for 2^(16 - 10)
   times fewer sets per part: on ResNet-20 the parts' tables took a third of the search's time at 16 channels, and
   with 10 below the root the 60 s search evaluates ~5,700 nodes instead of ~3,500 at 50 % FLOPs (gap 4.15e-4 ->
   3.86e-4) while the root bound, which sets the final bound at 30 %, keeps its 16-channel parts. Both convs share
   the inner set, where the count tables let each row choose its own. The DP steps over the block from its input's
   count to its output's count, taking the smaller of the block table and the two count tables at every entry. A
   block table depends only on the fixings of its three maps, so it is cached and reused by every node with the same
   fixings; it is filled only over the root's input and output count ranges (after the root's reductions), which
   hold every node's.

6. Budget-exact count DP (:mod:`combax.solvers._channels_budget`): the Lagrangian in 2. can exceed the budget-
   constrained maximum of the tables by its budget term lam (B - cost) at the profile. Where the profile's tables
   alone are at most the incumbent (only that term keeps the node open), the node is also bounded by the count DP with
   the resource as a second state in rounded-down units (at most ``BUDGET_UNITS``, at most ``BUDGET_WORK`` steps),
   a valid bound that does not dualise the budget. On small networks, where one count step moves a large share of
   the budget, this closes most of the gap at the root; on ResNet-20 it rarely cuts a node.

7. Count-range reduction (`_Ctx.reduce_counts`): the end of a count range whose bound, with the range cut to that
   end, is at most the incumbent holds no better solution and is cut off (binary search per end). Narrower ranges
   make every later DP smaller and save count branchings. Applied at the root, and at nodes whose bound is within
   ``REDUCE_GAP`` of the incumbent while the reductions have cost at most ``REDUCE_PER_NODE`` Lagrangians per node
   evaluated.

The Lagrangian of a node starts from its parent's multiplier (and each folding round from the last one): any
multiplier gives a valid bound, so the start only changes the number of DPs.

Incumbents: the original greedy (alternating top-k, then ratio fill) at the root, improved by local search
(:mod:`combax.solvers._channels_local`: swaps, ratio fill, drop-and-fill), the prefix-ranking count DP
(:mod:`combax.solvers._channels_prefix`: every count re-optimised at once over channel rankings), an iterated
local search (random swaps on plain maps, then local search) and, once the multipliers are chosen, a window search
(`_window_search`: every WINDOW consecutive maps re-optimised by this search with the other maps fixed to the
incumbent, at most WINDOW_NODES nodes each, while it improves); at every node, alternating top-k on the DP's
budget-feasible count profile, then ratio fill, then (every ``LS_EVERY``-th node) local search; and every node
whose binaries are all fixed.

Branching: take the conv with the largest gap between its bound UB_l at the profile (a block's excess over its two
tables taken half from each; stored with the node) and the value the heuristic achieved there; split the wider of
its two count ranges at the profile's count; once both are single counts, fix the free channel of highest total
incident importance (child "kept" first). Nodes are explored best-first (largest bound), pruned when bound <=
incumbent (1 + 1e-9).

Parallelism: the count-table and block kernels run on every core (numba ``prange``); their results do not depend on
the number of threads, so the search is deterministic without a time limit.

Complexity: worst-case exponential in the number of binaries, O(sum_l C_l C_s log C) per node plus, per block whose
table is not cached, O(BLOCK_ALL (C_s C_t + (C_s + C_t) log)), O(C_s C_i C_t) per block in every DP, and
O(BUDGET_WORK) where the budget-exact DP runs; at the root, O(LP_ITERS sum_l C_l C_s) for the LP duals.
"""

from __future__ import annotations

import heapq
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ._channels_blocks import _ub_block_kernel, _ub_block_split_kernel, block_offsets, block_plan, find_blocks
from ._channels_budget import budget_dp_kernel, step_minima, work_of
from ._channels_greedy import greedy_state, resource_of
from ._channels_kernels import (
    NEG,
    _block_value,
    _fill_kernel,
    _lagrange_kernel,
    _mu_subgrad_kernel,
    _objective_kernel,
    _profile_heuristic_kernel,
    _propagate_kernel,
    _ub_tables_fold_kernel,
    _ub_tables_mu_kernel,
)
from ._channels_layout import Flat
from ._channels_local import _local_search_kernel
from ._channels_lp import F1Relaxation, multipliers_from_duals
from ._channels_prefix import improve_by_prefix_dp
from ._status import Status

TOL = 1e-9
LS_EVERY = 8  # local search on every LS_EVERY-th node heuristic's selection
LS_ROUNDS = 1000
LS_DROPS = 64  # drop-and-fill tries per local-search round at nodes and in the iterated local search
ROOT_DROPS = 256  # the same for the first local search at the root
PREFIX_SHARE = 0.1  # at most this share of the time limit goes to the root's prefix-ranking count DP
ILS_SHARE = 0.1  # at most this share of the time limit goes to the root's iterated local search
ILS_ITERS = 400
ILS_PATIENCE = 40  # stop after this many perturbations in a row without a better incumbent
MU_SHARE = 0.15  # at most this share of the time limit goes to the root's multiplier optimisation
MU_ITERS = 300
LP_MULTIPLIERS = True  # also try multipliers from the LP relaxation's duals (`_channels_lp`); keep the better root
LP_ITERS = 3000  # PDHG iterations for them (at most) ...
LP_STAGES = (1000, LP_ITERS)  # ... in stages (in all, at the end of each), the root bound re-evaluated after each ...
LP_SHARE = 0.1  # ... and at most this share of the time limit
FOLD = True  # tighten the tables lazily by the folded bounds at every node
FOLD_ROUNDS = 8
REDUCE_GAP = 1e-3  # cut the count ranges at the root, and at nodes within this relative gap (0: off) ...
REDUCE_PER_NODE = 4  # ... while the reductions have solved at most this many Lagrangians per node evaluated
BLOCKS = True  # bound two convs around an inner map jointly (`_channels_blocks`)
BLOCK_WIDTH = 64  # widest inner map considered for a block
BLOCK_ALL = 1 << 16  # enumerate all 2^f inner sets of a block while 2^f <= BLOCK_ALL, else
BLOCK_NEAR = 42_000  # those that drop at most d free channels, at most BLOCK_NEAR sets (d = 4 on 32-wide maps, 2 on 64)
BLOCK_PART = 16  # and a valid inexact table for the other inner counts, from parts of BLOCK_PART channels (0: off)
NODE_PART = 10  # the same below the root (window search, search tree): looser, 2^6 x fewer sets per part
BLOCK_NARROW = 32  # no block around a wider inner map that the root's profile keeps whole
BUDGET_DP = True  # also bound nodes by the budget-exact count DP (`_channels_budget`) where it may prune them
BUDGET_UNITS = 2000  # resource units of that DP (at most) ...
BUDGET_WORK = 4_000_000  # ... and at most this many (count pair x unit) steps per node
BUDGET_MIN_UNITS = 50  # no budget-exact DP with fewer units
WINDOW = 3  # maps per window of the root's window search (`_window_search`; 0: off) ...
WINDOW_NODES = 400  # ... nodes per window at most ...
WINDOW_SWEEPS = 3  # ... sweeps over the windows at most ...
WINDOW_SHARE = 0.2  # ... and at most this share of the time limit
BLOCK_CACHE_MB = 512  # block tables kept (least recently used dropped); each (C_s + 1)(C_i + 1)(C_t + 1) floats


class _MultiplierSpace(NamedTuple):
    meq: np.ndarray
    mal: np.ndarray
    mbe: np.ndarray
    alfree: np.ndarray
    ks: np.ndarray
    has_t: np.ndarray
    has_s: np.ndarray


@dataclass(slots=True)
class _Node:
    FU: np.ndarray
    FV: np.ndarray
    nlo: np.ndarray
    nhi: np.ndarray
    mlo: np.ndarray
    mhi: np.ndarray
    depth: int = 0
    lam: float = 0.0  # the budget multiplier of the last bound: where the children's Lagrangian starts


@dataclass(slots=True)
class BnBOutput:
    U: np.ndarray
    V: np.ndarray
    objective: float
    bound: float
    status: Status
    n_nodes: int
    message: str


class _Ctx:
    def __init__(self, f: Flat, budget: float):
        self.f = f
        self.budget = float(budget)
        # the bound relaxes the budget by a rounding tolerance: the DP sums the resource in another order than the
        # validator, and at a budget equal to a profile's resource (e.g. the minimum) round-off must not declare
        # the node infeasible. A relaxation only loosens the bound; incumbents are checked against the exact budget.
        self.budget_relaxed = self.budget + 1e-9 * max(1.0, abs(self.budget))
        m = f.widths.size - 1
        self.m = m
        sizes = [(f.widths[k + 1] + 1) * (f.widths[f.src[k]] + 1) for k in range(m)]
        self.toff = np.zeros(m + 1, np.int64)
        self.toff[1:] = np.cumsum(sizes)
        self.T = np.empty(self.toff[-1])
        # static score: total importance incident to each channel (rows of its producer, columns of its readers)
        st = np.zeros((m + 1, f.cmax))
        for k in range(m):
            t, s = k + 1, f.src[k]
            a = f.imp[f.off[k] : f.off[k + 1]].reshape(f.widths[t], f.widths[s])
            st[t, : f.widths[t]] += a.sum(1)
            st[s, : f.widths[s]] += a.sum(0)
        self.static = st
        # Lagrangian decomposition multipliers, as per-conv row offsets RO[t] (rows of the producer of map t) and
        # column offsets CO[k] (columns of conv k); zero = the plain bound. See `optimize_multipliers`.
        self.RO = np.zeros((m + 1, f.cmax))
        self.CO = np.zeros((m, f.cmax))
        self.fold = False  # also the folded bounds (`_ub_tables_fold_kernel`); set once the multipliers are chosen
        self.no_blocks = np.full(m + 1, -1, np.int64)
        self.parts = BLOCK_PART  # the parts' size of the block tables' inexact part (`block_tables`)
        self.use_blocks = False  # set once the multipliers are chosen, like `fold`
        self.set_blocks(find_blocks(f, BLOCK_WIDTH))
        readers = [[] for _ in range(m + 1)]
        for k in range(m):
            readers[f.src[k]].append(k)
        self.reader = np.array([r[0] if len(r) == 1 else -1 for r in readers], np.int64)
        self.space = self._multiplier_space()  # where the decomposition multipliers live; None: nowhere
        self.lp = None  # the F1 LP relaxation and its first-order method, built at the first `lp_multipliers`
        self.n_probes = 0  # Lagrangians solved by `reduce_counts`
        self.floor = -np.inf  # the incumbent's objective: the budget-exact DP runs where it may bound a node below it
        self.n_budget_dp = 0
        # per inner map, the inner set at which the parts' block tables are exact (`_ub_block_split_kernel`'s
        # target): the incumbent's when the blocks are switched on, none (zeros) before
        self.part_target = np.zeros((m + 1, f.cmax), np.uint8)

    def root(self) -> _Node:
        f, m = self.f, self.m
        FU = np.full((m + 1, f.cmax), -1, np.int8)
        FV = np.full((m + 1, f.cmax), -1, np.int8)
        FU[0], FV[0] = 1, 1
        for t in range(m + 1):
            FU[t, f.widths[t] :] = 0
            FV[t, f.widths[t] :] = 0
        nlo = f.kmin.copy()  # min_keep: n_t >= kmin[t] (>= 1), and m_t >= n_t >= kmin[t]
        nhi = f.widths.copy()
        nlo[0] = f.widths[0]
        return _Node(FU, FV, nlo, nhi, nlo.copy(), nhi.copy())

    def evaluate(self, node: _Node):
        """Propagate and bound: (bound, prof_n, prof_m, ub_k) or None when the node is infeasible; ub_k[k] is conv
        k's table value at the profile (kept with the node: the tables are overwritten by the next evaluation)."""
        f = self.f
        ok = _propagate_kernel(
            f.widths, f.res_src, f.res_kind, node.FU, node.FV, node.nlo, node.nhi, node.mlo, node.mhi
        )
        if not ok:
            return None
        _ub_tables_mu_kernel(f.widths, f.src, f.imp, f.off, node.FU, node.FV, self.toff, self.T, self.RO, self.CO)
        bk = self.block_tables(node) if self.use_blocks else self.no_blocks
        pn = np.zeros(self.m + 1, np.int64)
        pm = np.zeros(self.m + 1, np.int64)
        bound, node.lam = _lagrange_kernel(f.widths, f.src, f.res_src, f.res_kind, f.cost, f.lin, self.toff, self.T,
                                           bk, self.boff, self.BT, self.bfrom, node.nlo, node.nhi, node.mlo, node.mhi,
                                           self.budget_relaxed, node.lam, pn, pm)  # fmt: skip
        if bound <= NEG / 2:
            return None
        if self.fold:
            # lazy folding: tighten the table rows / columns of the profile's counts, re-solve, until the profile
            # only uses folded entries (or FOLD_ROUNDS)
            m = self.m
            done_a = np.zeros((m, f.cmax + 1), bool)
            done_b = np.zeros((m, f.cmax + 1), bool)
            for _ in range(FOLD_ROUNDS):
                fa = np.full(m, -1, np.int64)
                fb = np.full(m, -1, np.int64)
                new = False
                for k in range(m):
                    a, b = pn[k + 1], pm[f.src[k]]
                    if not done_a[k, a]:
                        done_a[k, a] = new = True
                        fa[k] = a
                    if not done_b[k, b]:
                        done_b[k, b] = new = True
                        fb[k] = b
                if not new:
                    break
                _ub_tables_fold_kernel(f.widths, f.src, f.imp, f.off, node.FU, node.FV, self.toff, self.T, self.RO,
                                       self.CO, node.nlo, node.nhi, node.mlo, node.mhi, fa, fb)  # fmt: skip
                b2, lam2 = _lagrange_kernel(f.widths, f.src, f.res_src, f.res_kind, f.cost, f.lin, self.toff, self.T,
                                            bk, self.boff, self.BT, self.bfrom, node.nlo, node.nhi, node.mlo, node.mhi,
                                            self.budget_relaxed, node.lam, pn, pm)  # fmt: skip
                if b2 <= NEG / 2:  # cannot happen (folding keeps every finite entry finite); keep the last bound
                    break
                if b2 < bound:
                    bound, node.lam = b2, lam2
        ubk = np.array([self.ub_at(k, pn[k + 1], pm[f.src[k]]) for k in range(self.m)])
        for q, t in enumerate(self.blocks):
            if bk[t] >= 0:  # the block's value at the profile, its excess over the two tables taken half from each
                u1, u2 = ubk[t - 2], ubk[t - 1]
                excess = u1 + u2 - _block_value(f.widths, self.toff, self.T, self.boff, self.BT, self.bfrom, q, t,
                                                pm[t - 2], pn[t - 1], pn[t])  # fmt: skip
                ubk[t - 2], ubk[t - 1] = u1 - excess / 2, u2 - excess / 2
        tol = TOL * max(1.0, abs(self.floor))
        if BUDGET_DP and bound > self.floor + tol and ubk.sum() <= self.floor + tol:
            # the profile's tables alone are at most the incumbent: the budget term lam (B - cost) lifts the bound
            # above it, and without dualising the budget the node may be cut off
            exact = self.budget_bound(node, bk)
            if exact is not None:
                if exact <= NEG / 2:
                    return None
                bound = min(bound, exact)
        return bound, pn, pm, ubk

    def budget_bound(self, node: _Node, bk):
        """The budget-exact count DP's bound of ``node`` (its tables in place), or None when it would need more than
        BUDGET_WORK steps at BUDGET_MIN_UNITS units."""
        f = self.f
        work = work_of(f.widths, f.src, bk, node.nlo, node.nhi, node.mlo, node.mhi)
        units = min(BUDGET_UNITS, BUDGET_WORK // max(work, 1))
        if units < BUDGET_MIN_UNITS:
            return None
        cmin = np.empty(self.m)
        step_minima(f.src, f.cost, f.lin, node.nlo, node.mlo, cmin)
        room = self.budget_relaxed - cmin.sum()
        if room < 0:
            return NEG
        if room == 0:
            return None
        self.n_budget_dp += 1
        return float(budget_dp_kernel(f.widths, f.src, f.res_src, f.res_kind, f.cost, f.lin, self.toff, self.T, bk,
                                      self.boff, self.BT, self.bfrom, node.nlo, node.nhi, node.mlo, node.mhi, cmin,
                                      room / units, units))  # fmt: skip

    def set_blocks(self, outs: np.ndarray):
        """Bound the blocks ending at the maps ``outs`` jointly (an empty cache and table space for them)."""
        self.blocks = outs
        self.boff = block_offsets(self.f, outs)
        self.BT = np.empty(max(int(self.boff[-1]), 1))
        self.bfrom = np.zeros(max(outs.size, 1), np.int64)  # a block table is filled for inner counts >= bfrom
        # a block table depends only on its three maps' fixings (and the multipliers, fixed once blocks are used):
        # computed for every count, it is reused by every node with the same fixings
        self.block_cache: OrderedDict = OrderedDict()
        self.cache_bytes = 0
        # block tables are filled only over these input / output count ranges (`restrict_block_fill`)
        self.fill_m = np.stack([np.zeros(self.m + 1, np.int64), self.f.widths.copy()])
        self.fill_n = self.fill_m.copy()

    def restrict_block_fill(self, node: _Node):
        """Fill later block tables only over the count ranges of ``node``, the root after its count reductions:
        every node's ranges lie within the root's, so the entries outside are never read; the cached tables (filled
        more widely) stay valid."""
        self.fill_m = np.stack([node.mlo, node.mhi])
        self.fill_n = np.stack([node.nlo, node.nhi])

    def drop_wide_full_blocks(self, pn) -> bool:
        """Drop the blocks with inner maps wider than BLOCK_NARROW that the root's profile ``pn`` keeps whole: their
        DP step costs O(C^3) and, with the inner map whole, the count tables are nearly exact there. Returns
        whether any was dropped."""
        f = self.f
        keep = [t for t in self.blocks if f.widths[t - 1] <= BLOCK_NARROW or pn[t - 1] < f.widths[t - 1]]
        if len(keep) == self.blocks.size:
            return False
        self.set_blocks(np.array(keep, np.int64))
        return True

    def block_tables(self, node: _Node) -> np.ndarray:
        """Fill the block tables of ``node`` and the inner-count ranges where they are filled; returns the DP's block
        index per map (-1: no block ends there). The parts' table (below the exact inner counts) is computed only
        when the node's inner count range reaches below them."""
        f = self.f
        bk = self.no_blocks.copy()
        for q, t in enumerate(self.blocks):
            inner = node.FU[t - 1, : f.widths[t - 1]]
            lo_a, d = block_plan(np.count_nonzero(inner == 1), np.count_nonzero(inner < 0), BLOCK_ALL, BLOCK_NEAR)
            if not self.parts and node.nhi[t - 1] < lo_a:  # no inner count of the node where a table is filled
                continue
            at = slice(self.boff[q], self.boff[q + 1])
            rng = tuple(int(x) for x in (*self.fill_m[:, t - 2], *self.fill_n[:, t]))  # input and output counts to fill
            if not (rng[0] <= node.mlo[t - 2] and node.mhi[t - 2] <= rng[1] and rng[2] <= node.nlo[t]
                    and node.nhi[t] <= rng[3]):  # fmt: skip
                rng = (1, f.widths[t - 2], 1, f.widths[t])  # cannot happen (ranges only shrink); kept as a guard
            key = (q, rng, node.FV[t - 2].tobytes(), node.FU[t - 1].tobytes(), node.FU[t].tobytes())
            hit = self.block_cache.pop(key, None)
            if hit is None:
                filled = _ub_block_kernel(f.widths, f.imp, f.off, node.FU, node.FV, self.RO, self.CO, t, self.BT,
                                          self.boff[q], BLOCK_ALL, BLOCK_NEAR, *rng)  # fmt: skip
            else:
                self.cache_bytes -= hit[0].nbytes
                self.BT[at], filled = hit
            if self.parts and d >= 0 and node.nlo[t - 1] < filled:  # the parts' table below the exact counts
                split = np.empty(self.boff[q + 1] - self.boff[q])
                _ub_block_split_kernel(f.widths, f.imp, f.off, node.FU, node.FV, self.RO, self.CO, t, self.parts,
                                       split, *rng, self.part_target[t - 1])  # fmt: skip
                shape = (f.widths[t - 2] + 1, f.widths[t - 1] + 1, f.widths[t] + 1)
                self.BT[at].reshape(shape)[:, :filled] = split.reshape(shape)[:, :filled]
                filled = 0
            self.block_cache[key] = (self.BT[at].copy() if hit is None or filled != hit[1] else hit[0], filled)
            self.cache_bytes += self.BT[at].nbytes
            while self.cache_bytes > BLOCK_CACHE_MB << 20:
                self.cache_bytes -= self.block_cache.popitem(last=False)[1][0].nbytes
            self.bfrom[q] = filled
            bk[t] = q
        return bk

    def reduce_counts(self, node: _Node, floor: float) -> bool:
        """Shrink the count ranges of ``node``, the node evaluated last (its tables are in place), to the counts that
        may hold a solution better than ``floor``: the end [c, hi] (or [lo, c]) of a range whose bound, the
        Lagrangian DP over the node with that range alone, is at most ``floor`` is cut off. Binary search for the
        largest cut at each end, O(log C) Lagrangians per end of every count range. Returns whether a range shrank."""
        f = self.f
        bk = self.block_tables(node) if self.use_blocks else self.no_blocks
        pn = np.zeros(self.m + 1, np.int64)
        pm = np.zeros(self.m + 1, np.int64)
        tol = TOL * max(1.0, abs(floor))

        def pruned(t, plain, lo_v, hi_v, n_side):
            self.n_probes += 1
            nlo, nhi, mlo, mhi = node.nlo.copy(), node.nhi.copy(), node.mlo.copy(), node.mhi.copy()
            if plain or n_side:
                nlo[t], nhi[t] = lo_v, hi_v
            if plain or not n_side:
                mlo[t], mhi[t] = lo_v, hi_v
            b, _ = _lagrange_kernel(f.widths, f.src, f.res_src, f.res_kind, f.cost, f.lin, self.toff, self.T, bk,
                                    self.boff, self.BT, self.bfrom, nlo, nhi, mlo, mhi, self.budget_relaxed,
                                    node.lam, pn, pm)  # fmt: skip
            return b <= floor + tol

        shrank = False
        for t in range(1, self.m + 1):
            plain = f.res_kind[t] == 0
            for n_side in (True,) if plain else (True, False):
                lo_a, hi_a = (node.nlo, node.nhi) if n_side else (node.mlo, node.mhi)
                lo, hi = int(lo_a[t]), int(hi_a[t])
                if lo < hi and pruned(t, plain, hi, hi, n_side):  # cut [c, hi] for the smallest such c > lo
                    a, b = lo + 1, hi  # pruned at b; find the smallest pruned c in [a, b]
                    while a < b:
                        c = (a + b) // 2
                        if pruned(t, plain, c, hi, n_side):
                            b = c
                        else:
                            a = c + 1
                    hi = b - 1
                if lo < hi and pruned(t, plain, lo, lo, n_side):  # cut [lo, c] for the largest such c < hi
                    a, b = lo, hi - 1
                    while a < b:
                        c = (a + b + 1) // 2
                        if pruned(t, plain, lo, c, n_side):
                            a = c
                        else:
                            b = c - 1
                    lo = a + 1
                if (lo, hi) != (lo_a[t], hi_a[t]):
                    shrank = True
                    lo_a[t], hi_a[t] = lo, hi
                    if plain:
                        node.mlo[t], node.mhi[t] = lo, hi
        return shrank

    def set_multipliers(self, RO, CO):
        """Use the multipliers' offsets RO, CO from now on (folding where they are not zero; the block tables cached
        with other multipliers dropped)."""
        self.RO, self.CO = RO, CO
        self.fold = FOLD and bool(RO.any() or CO.any())
        self.set_blocks(self.blocks)

    def _multiplier_space(self):
        """Where the decomposition multipliers live (see `optimize_multipliers`): masks meq, mal, mbe (1 where the
        multiplier exists), alfree (al of free sign), ks (reader of each residual target's shortcut source), has_t /
        has_s (maps with a reader / with a shortcut-source reader); None when there are none."""
        f, m, cm = self.f, self.m, self.f.cmax
        W = f.widths
        kt = self.reader  # reader conv of each map, -1 if none or several
        meq = np.zeros((m + 1, cm))
        mal = np.zeros((m + 1, cm))
        mbe = np.zeros((m + 1, cm))
        alfree = np.zeros((m + 1, cm), bool)
        ks = np.full(m + 1, -1, np.int64)  # reader of the shortcut source, for be
        for t in range(1, m + 1):
            if kt[t] < 0:
                continue
            if f.res_kind[t] == 0:
                meq[t, : W[t]] = 1
                continue
            sr = f.res_src[t]
            mal[t, : W[t]] = 1
            if f.res_kind[t] == 2:
                alfree[t, W[sr] : W[t]] = True
            if f.res_kind[t] in (1, 2) and sr > 0 and kt[sr] >= 0:
                mbe[t, : W[sr]] = 1
                ks[t] = kt[sr]
        if not (meq.any() or mal.any()):
            return None
        has_t = np.flatnonzero(kt >= 0)
        has_t = has_t[has_t >= 1]
        has_s = np.flatnonzero(ks >= 0)
        return _MultiplierSpace(meq, mal, mbe, alfree, ks, has_t, has_s)

    def offsets(self, eq, al, be):
        """Row offsets RO (M + 1, cmax) and column offsets CO (M, cmax) of the multipliers (eq, al, be), which must
        be zero outside ``space`` (al >= 0 except where alfree, be >= 0)."""
        space = self.space
        RO = eq - al + be
        CO = np.zeros((self.m, self.f.cmax))
        if space is not None:
            np.add.at(CO, self.reader[space.has_t], (-eq + al - be)[space.has_t])
            np.add.at(CO, space.ks[space.has_s], be[space.has_s])
        return RO, CO

    def lp_multipliers(self, iters: int, deadline: float, target: float):
        """Multipliers from the approximate duals of the F1 LP relaxation (`_channels_lp`), restricted to
        ``space`` (al, be clipped at 0 where their sign is fixed): (RO, CO, the LP bound the duals prove),
        or None when the decomposition has no multipliers. The first-order method runs on from the last call's
        iterate to ``iters`` iterations in all and stops early once its bound is at most ``target``."""
        space = self.space
        if space is None:
            return None
        if self.lp is None:
            self.lp = F1Relaxation(self.f, self.budget)
        d = self.lp.duals(iters, deadline, target)
        eq, al, be = multipliers_from_duals(self.f, d)
        eq = eq * space.meq
        al = np.where(space.alfree, al, np.maximum(al, 0.0)) * space.mal
        be = np.maximum(be, 0.0) * space.mbe
        return (*self.offsets(eq, al, be), d.bound)

    @property
    def lp_converged(self) -> bool:
        """Whether the LP relaxation's first-order method has converged (no later stage would move its duals)."""
        return self.lp is not None and self.lp.pdhg.converged

    def optimize_multipliers(self, node: _Node, target: float, max_iter: int, deadline: float):
        """Subgradient descent on Lagrangian decomposition multipliers at ``node`` (propagated); keeps the best.

        The objective is augmented by terms that vanish or are >= 0 on every valid selection, so every multiplier
        value gives a valid bound: eq[t, j] (u_t - v_t) on maps that are not residual targets (u = v), al[t, j]
        (v_t - u_t) >= 0 (al >= 0; free where zero-padding forces v = u) and be[t, j] (u_t + v_s - v_t) >= 0 (be >= 0)
        on residual targets t of an identity / zero-pad shortcut from s. Each u / v term goes to the conv that has
        the variable as a row (the producer) or a column (its unique reader), where the count tables bound it.
        Step: Polyak towards ``target`` (the incumbent), halved after 8 non-improving steps.
        """
        f, m, cm = self.f, self.m, self.f.cmax
        space = self.space
        if space is None:
            return
        meq, mal, mbe, alfree = space.meq, space.mal, space.mbe, space.alfree
        kt, ks, has_t, has_s = self.reader, space.ks, space.has_t, space.has_s
        offsets = self.offsets

        pn = np.zeros(m + 1, np.int64)
        pm = np.zeros(m + 1, np.int64)
        rs = np.zeros((m + 1, cm))
        cs = np.zeros((m, cm))
        lam = [node.lam]  # warm start of each bound's Lagrangian: the last multiplier

        def bound(x):
            RO, CO = offsets(*x)
            _ub_tables_mu_kernel(f.widths, f.src, f.imp, f.off, node.FU, node.FV, self.toff, self.T, RO, CO)
            b, lam[0] = _lagrange_kernel(f.widths, f.src, f.res_src, f.res_kind, f.cost, f.lin, self.toff, self.T,
                                         self.no_blocks, self.boff, self.BT, self.bfrom, node.nlo, node.nhi, node.mlo,
                                         node.mhi, self.budget_relaxed, lam[0], pn, pm)  # fmt: skip
            if b <= NEG / 2:
                return b, None
            _mu_subgrad_kernel(f.widths, f.src, f.imp, f.off, node.FU, node.FV, RO, CO, pn, pm, rs, cs)
            gt = np.zeros((m + 1, cm))
            gt[has_t] = rs[has_t] - cs[kt[has_t]]
            gbe = gt.copy()
            gbe[has_s] += cs[ks[has_s]]
            return b, (gt * meq, -gt * mal, gbe * mbe)

        x = [np.zeros((m + 1, cm)) for _ in range(3)]
        b, g = bound(x)
        if g is None:
            return
        best, bx = b, [a.copy() for a in x]
        alpha, noimp = 1.0, 0
        for _ in range(max_iter):
            if time.perf_counter() > deadline or alpha < 1e-3 or best <= target:
                break
            nrm = sum(float((gi * gi).sum()) for gi in g)
            if nrm == 0:
                break
            step = alpha * max(b - target, 1e-9 * max(1.0, abs(b))) / nrm
            x = [xi - step * gi for xi, gi in zip(x, g)]
            x[1] = np.where(alfree, x[1], np.maximum(x[1], 0.0))
            x[2] = np.maximum(x[2], 0.0)
            b, g = bound(x)
            if g is None:  # cannot happen (infeasibility does not depend on the multipliers); keep the best
                break
            if b < best - 1e-12 * max(1.0, abs(best)):
                best, bx, noimp = b, [a.copy() for a in x], 0
            else:
                noimp += 1
                if noimp >= 8:
                    alpha, noimp = alpha / 2, 0
                    x = [a.copy() for a in bx]
                    b, g = bound(x)
        self.RO, self.CO = offsets(*bx)

    def ub_at(self, k, a, b):
        cs = self.f.widths[self.f.src[k]]
        return self.T[self.toff[k] + a * (cs + 1) + b]


def root_bound(f: Flat, budget: float) -> float:
    """The root node's Lagrangian count-DP bound (used to report a gap for the greedy)."""
    ctx = _Ctx(f, budget)
    out = ctx.evaluate(ctx.root())
    return float("nan") if out is None else float(out[0])


def _leaf_solution(node: _Node):
    if np.any(node.FU < 0) or np.any(node.FV < 0):
        return None
    return node.FU.astype(np.uint8), node.FV.astype(np.uint8)


def branch_and_bound(f: Flat, budget: float, *, time_limit=None, rel_gap=0.0, node_limit=None, verbose=False, t0=None):
    """Run the search; see the module docstring. Needs min resource <= budget < full resource."""
    t0 = time.perf_counter() if t0 is None else t0
    deadline = t0 + time_limit if time_limit is not None else np.inf
    bar = None
    if verbose:
        from tqdm import tqdm

        bar = tqdm(desc="channels bnb", unit="node")
    ctx = _Ctx(f, budget)
    m = ctx.m
    # incumbent: the original greedy
    U, V, inc = greedy_state(f, budget)
    best = (U, V)
    ctx.floor = inc
    act = np.zeros(m)
    n_heur = 0

    def local_search(U_, V_, rounds, drops):
        # improve a valid selection within the budget in place; returns the objective
        return _local_search_kernel(f.widths, f.src, f.imp, f.off, f.cost, f.lin, f.res_src, f.res_kind, budget, U_,
                                    V_, rounds, drops, f.kmin)  # fmt: skip

    def try_incumbent(U_, V_):
        nonlocal inc, best
        if resource_of(f, U_, V_) > budget:
            return
        obj = float(_objective_kernel(f.widths, f.src, f.imp, f.off, U_, V_))
        if obj > inc:
            inc, best = obj, (U_.copy(), V_.copy())
            ctx.floor = inc

    def heuristic(node, pn, pm):
        nonlocal n_heur
        Uh = np.zeros((m + 1, f.cmax), np.uint8)
        Vh = np.zeros((m + 1, f.cmax), np.uint8)
        _profile_heuristic_kernel(f.widths, f.src, f.imp, f.off, f.res_src, f.res_kind, node.FU, node.FV, pn, pm,
                                  ctx.static, Uh, Vh, act)  # fmt: skip
        if resource_of(f, Uh, Vh) <= budget:
            a = act.copy()
            if ctx.RO.any() or ctx.CO.any():  # the tables include the multiplier offsets: compare like with like
                for k in range(m):
                    t, s = k + 1, f.src[k]
                    a[k] += (
                        ctx.RO[t, : f.widths[t]] @ Uh[t, : f.widths[t]]
                        + ctx.CO[k, : f.widths[s]] @ Vh[s, : f.widths[s]]
                    )
            _fill_kernel(f.widths, f.src, f.imp, f.off, f.cost, f.lin, f.res_src, f.res_kind, budget, Uh, Vh)
            n_heur += 1
            if n_heur % LS_EVERY == 0:  # by count, not time: runs without a time limit stay deterministic
                local_search(Uh, Vh, LS_ROUNDS, LS_DROPS)
            try_incumbent(Uh, Vh)
            return a
        return None

    def time_left():
        return time.perf_counter() < deadline

    def share_deadline(share):  # the time after `share` of the time limit from now, at most the limit
        return min(deadline, time.perf_counter() + share * time_limit) if time_limit is not None else np.inf

    def stage(name, bound=np.inf):  # the root's stages on the progress bar
        if bar is not None:
            bar.set_description_str(f"channels bnb ({name})")
            show(min(bound, cap))

    def show(bound):
        ub = max(inc, bound)
        gap = (ub - inc) / max(abs(ub), 1e-12) if np.isfinite(ub) else np.inf
        bar.set_postfix(incumbent=f"{inc:.6g}", bound=f"{ub:.6g}", gap=f"{gap:.2e}")
        bar.refresh()

    def finish(out: BnBOutput) -> BnBOutput:
        if bar is not None:
            bar.n = out.n_nodes
            show(out.bound)
            bar.close()
        return out

    cap = np.inf  # the least bound of the whole problem found at the root (the LP's, the root's): caps every node's
    stage("root local search")
    U2, V2 = U.copy(), V.copy()
    local_search(U2, V2, 1000, ROOT_DROPS)
    try_incumbent(U2, V2)
    if time_left():
        stage("root prefix DP")
        share = share_deadline(PREFIX_SHARE) - time.perf_counter() if time_limit is not None else None
        try_incumbent(*improve_by_prefix_dp(f, budget, best[0], best[1], time_limit=share)[:2])
    # iterated local search: perturb the incumbent by random swaps on maps that are neither residual targets nor
    # shortcut sources (there every swap keeps the selection valid and the resource unchanged), then local search
    free_maps = [t for t in range(1, m + 1) if f.res_kind[t] == 0 and not np.any(f.res_src == t) and f.widths[t] > 1]
    root = ctx.root()

    def evaluate_root():
        nonlocal cap
        e = ctx.evaluate(root)
        if e is not None:
            cap = min(cap, e[0])
        return e

    ev = evaluate_root()
    fresh = True  # the tables in place are ev's (`reduce_counts` reads them)
    lp_note = ""

    def closed(bound):  # no better solution below this bound
        return bound <= inc + TOL * max(1.0, abs(inc))

    def is_open(e):  # the node's bound (capped) is above the incumbent
        return e is not None and not closed(min(e[0], cap))

    if free_maps and is_open(ev) and time_left():
        stage("root iterated local search", ev[0])
        rng = np.random.default_rng(0)
        ils_end = share_deadline(ILS_SHARE)
        fails = 0
        for _ in range(ILS_ITERS):
            if time.perf_counter() > ils_end or fails >= ILS_PATIENCE:
                break
            U2, V2 = best[0].copy(), best[1].copy()
            for t in rng.choice(free_maps, size=min(len(free_maps), int(rng.integers(1, 4))), replace=False):
                w = f.widths[t]
                on = np.flatnonzero(U2[t, :w])
                off = np.flatnonzero(U2[t, :w] == 0)
                q = min(int(rng.integers(1, 4)), on.size, off.size)
                if q == 0:
                    continue
                out_j = rng.choice(on, q, replace=False)
                in_j = rng.choice(off, q, replace=False)
                U2[t, out_j] = 0
                V2[t, out_j] = 0
                U2[t, in_j] = 1
                V2[t, in_j] = 1
            before = inc
            local_search(U2, V2, 1000, LS_DROPS)
            try_incumbent(U2, V2)
            fails = 0 if inc > before else fails + 1
    if is_open(ev) and time_left():
        stage("root LP multipliers", ev[0])
        ctx.use_blocks = BLOCKS and ctx.blocks.size > 0
        ctx.part_target = best[0].copy()
        lp = None
        lp_best = (ctx.RO, ctx.CO, ev)  # the multipliers with the lowest root bound so far: none (zero) ...
        lp_end = share_deadline(LP_SHARE)
        for iters in LP_STAGES if LP_MULTIPLIERS else ():  # the PDHG runs on between stages while the root is open
            if not time_left():
                break
            lp = ctx.lp_multipliers(iters, lp_end, inc)
            if lp is None:
                break
            cap = min(cap, lp[2])
            ctx.set_multipliers(lp[0], lp[1])
            ev = evaluate_root()
            if not is_open(ev) or ev[0] < lp_best[2][0]:  # ... or an LP stage's (better duals need not bound better)
                lp_best = (ctx.RO, ctx.CO, ev)
                lp_note = f", LP multipliers (LP bound {lp[2]:.9g})"
            if not is_open(ev) or ctx.lp_converged or time.perf_counter() > lp_end:
                break
        fresh = lp_best[2] is ev
        if not fresh:  # restored multipliers keep their saved evaluation
            ctx.set_multipliers(lp_best[0], lp_best[1])
            ev = lp_best[2]
        if is_open(ev) and time_left():  # the subgradient's multipliers, kept where they give the lower root bound
            stage("root subgradient", ev[0])
            lp_ro, lp_co, lp_ev = ctx.RO, ctx.CO, ev
            ctx.optimize_multipliers(root, inc, MU_ITERS, share_deadline(MU_SHARE))
            ctx.set_multipliers(ctx.RO, ctx.CO)
            ev, fresh = evaluate_root(), True
            if ev is None or ev[0] >= lp_ev[0]:
                ctx.set_multipliers(lp_ro, lp_co)
                ev, fresh = lp_ev, False
            else:
                lp_note = ""
        if ctx.use_blocks and is_open(ev) and ctx.drop_wide_full_blocks(ev[1]):
            fresh = False  # ev stays a valid bound (blocks only tighten); the root is re-evaluated for the reduction
    counter = 0

    def push(heap, node, ev):  # a leaf's selection is a candidate; else the heuristic runs, then the open node is kept
        nonlocal counter
        bound, pn, pm, ubk = ev
        leaf = _leaf_solution(node)
        if leaf is not None:
            try_incumbent(*leaf)
            return
        a = heuristic(node, pn, pm)
        if closed(bound):
            return
        heapq.heappush(heap, (-bound, counter, node, pn, pm, ubk, a))
        counter += 1

    window_note = ""
    if WINDOW > 0 and m > WINDOW and is_open(ev) and time_left():
        stage("root window search", ev[0])
        before = inc
        ctx.parts = NODE_PART
        n_window, sweeps = _window_search(ctx, lambda: best, closed, push, share_deadline(WINDOW_SHARE))
        ctx.parts = BLOCK_PART
        window_note = f", window search: {n_window} nodes, {sweeps} sweeps, {inc - before:+.6g}"
        fresh = False
    if REDUCE_GAP > 0 and is_open(ev) and time_left():
        stage("root count reduction", ev[0])
        if not fresh:
            ev = evaluate_root()
        if is_open(ev) and ctx.reduce_counts(root, inc):
            ctx.restrict_block_fill(root)
            ev = evaluate_root()
            if ev is None:  # no count range holds a better solution: the incumbent is optimal
                return finish(
                    BnBOutput(best[0], best[1], inc, inc, Status.OPTIMAL, 1, "root: every count range cut off")
                )
    if ev is None:  # cannot happen when min resource <= budget; kept as a guard
        return finish(BnBOutput(best[0], best[1], inc, inc, Status.OPTIMAL, 1, "root infeasible"))
    ctx.parts = NODE_PART
    heap = []
    push(heap, root, ev)
    n_nodes = 1
    status = Status.OPTIMAL
    if bar is not None:
        bar.set_description_str("channels bnb")
    last = time.perf_counter()
    while heap:
        top = min(-heap[0][0], cap)
        if closed(top) or top - inc <= rel_gap * abs(top):
            break
        if not time_left():
            status = Status.TIME_LIMIT
            break
        if node_limit is not None and n_nodes >= node_limit:
            status = Status.NODE_LIMIT
            break
        negb, _, node, pn, pm, ubk, a = heapq.heappop(heap)
        for child in _branch(ctx, node, pn, pm, ubk, a):
            n_nodes += 1
            ev = ctx.evaluate(child)
            if (
                ev is not None
                and not closed(ev[0])
                and ev[0] <= inc + REDUCE_GAP * abs(inc)
                and ctx.n_probes <= REDUCE_PER_NODE * n_nodes
                and ctx.reduce_counts(child, inc)
            ):
                ev = ctx.evaluate(child)
            if ev is not None and not closed(ev[0]):
                push(heap, child, ev)
        if bar is not None and time.perf_counter() - last > 0.5:
            last = time.perf_counter()
            bar.n = n_nodes
            show(min(-heap[0][0], cap) if heap else inc)
    bound = max(inc, min(-heap[0][0], cap)) if heap else inc  # stopped by a limit or rel_gap: the best open
    msg = f"{n_nodes} nodes, incumbent {inc:.9g}, bound {bound:.9g}, {ctx.n_budget_dp} budget-exact DPs"
    msg += lp_note + window_note
    return finish(BnBOutput(best[0], best[1], inc, float(bound), status, n_nodes, msg))


def _window_search(ctx: _Ctx, get_best, closed, push, deadline):
    """Re-optimise windows of WINDOW consecutive maps around the incumbent ``get_best()``: every other map's channels
    fixed to the incumbent's, each window searched best-first with the B&B's own bound, branching and node heuristics
    (``push``), at most WINDOW_NODES nodes; sweeps over the windows (maps 1-3, 2-4, ...) repeat while one improves
    the incumbent, at most WINDOW_SWEEPS, until ``deadline``. A primal heuristic (large-neighbourhood search): on
    ResNet-20 at 30 % FLOPs (60 s limit) the windows lift the root's incumbent from 322.0587 to 322.1469, the best
    selection known (HiGHS's exact 3-map windows find nothing better). Every window gets an equal share of the time
    left. Returns (nodes evaluated, sweeps)."""
    f, m = ctx.f, ctx.m
    n, sweeps = 0, 0
    while sweeps < WINDOW_SWEEPS and time.perf_counter() < deadline:
        sweeps += 1
        start = get_best()
        for first in range(1, m - WINDOW + 2):
            now = time.perf_counter()
            if now > deadline:
                break
            window_end = now + (deadline - now) / (m - WINDOW + 2 - first)  # the time left, shared by the windows left
            node = ctx.root()
            U, V = get_best()
            for t in range(1, m + 1):
                if not first <= t < first + WINDOW:
                    node.FU[t, : f.widths[t]] = U[t, : f.widths[t]]
                    node.FV[t, : f.widths[t]] = V[t, : f.widths[t]]
            heap = []
            ev = ctx.evaluate(node)
            n += 1
            if ev is not None and not closed(ev[0]):
                push(heap, node, ev)
            n_max = n + WINDOW_NODES
            while heap and n < n_max and time.perf_counter() < window_end and not closed(-heap[0][0]):
                _, _, node, pn, pm, ubk, a = heapq.heappop(heap)
                for child in _branch(ctx, node, pn, pm, ubk, a):
                    n += 1
                    ev = ctx.evaluate(child)
                    if ev is not None and not closed(ev[0]):
                        push(heap, child, ev)
        if get_best() is start:
            break
    return n, sweeps


def _branch(ctx: _Ctx, node: _Node, pn, pm, ubk, act):
    f = ctx.f
    m = ctx.m
    # conv order: largest gap between the bound at the profile and the heuristic's value there
    gaps = np.where(ubk > NEG / 2, ubk, 0.0) - (act if act is not None else 0.0)
    order = np.argsort(-gaps, kind="stable")
    # 1) counts
    for k in order:
        t, s = k + 1, int(f.src[k])
        cand = [("n", t, node.nhi[t] - node.nlo[t], pn[t])]
        if s > 0:
            cand.append(("m", s, node.mhi[s] - node.mlo[s], pm[s]))
        cand = [c for c in cand if c[2] > 0]
        if cand:
            kind, mp, _, at = max(cand, key=lambda c: c[2])
            return _split_count(ctx, node, kind, mp, at)
        break  # the largest-gap conv has single counts: branch on its channels
    # 2) channels
    for k in order:
        t, s = k + 1, int(f.src[k])
        options = []
        for F, mp, which in ((node.FU, t, "u"), (node.FV, s, "v")):
            if mp == 0:
                continue
            free = np.flatnonzero(F[mp, : f.widths[mp]] < 0)
            if free.size:
                j = int(free[np.argmax(ctx.static[mp, free])])
                options.append((ctx.static[mp, j], which, mp, j))
        if options:
            _, which, mp, j = max(options, key=lambda o: o[0])
            return _fix_channel(ctx, node, which, mp, j)
    # every channel fixed but counts open cannot happen after propagation; split any open count
    for t in range(1, m + 1):
        for kind, lo, hi in (("n", node.nlo, node.nhi), ("m", node.mlo, node.mhi)):
            if hi[t] > lo[t]:
                return _split_count(ctx, node, kind, t, lo[t])
    return []


def _copy(node: _Node) -> _Node:
    return _Node(node.FU.copy(), node.FV.copy(), node.nlo.copy(), node.nhi.copy(), node.mlo.copy(), node.mhi.copy(),
                 node.depth + 1, node.lam)  # fmt: skip


def _split_count(ctx, node, kind, mp, at):
    lo, hi = (node.nlo, node.nhi) if kind == "n" else (node.mlo, node.mhi)
    cut = int(at) if at < hi[mp] else int(at) - 1  # children [lo, cut] and [cut + 1, hi]
    cut = min(max(cut, int(lo[mp])), int(hi[mp]) - 1)
    a, b = _copy(node), _copy(node)
    for child, lo_v, hi_v in ((a, lo[mp], cut), (b, cut + 1, hi[mp])):
        clo, chi = (child.nlo, child.nhi) if kind == "n" else (child.mlo, child.mhi)
        clo[mp], chi[mp] = lo_v, hi_v
        if ctx.f.res_kind[mp] == 0:  # u and v are one vector
            child.nlo[mp], child.nhi[mp] = lo_v, hi_v
            child.mlo[mp], child.mhi[mp] = lo_v, hi_v
    # the child holding the profile's count first
    return [b, a] if at > cut else [a, b]


def _fix_channel(ctx, node, which, mp, j):
    kids = []
    for val in (1, 0):
        c = _copy(node)
        F = c.FU if which == "u" else c.FV
        F[mp, j] = val
        if ctx.f.res_kind[mp] == 0:
            c.FU[mp, j] = val
            c.FV[mp, j] = val
        kids.append(c)
    return kids
