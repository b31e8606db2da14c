"""The LP relaxation of the channel QCQP, solved approximately by a first-order method, and Lagrangian multipliers for
the branch-and-bound's count-DP bound from its duals.

The relaxation is the F1 model (`_channels_layout.f1_model`: one y per kept-weight product with the McCormick rows
y <= u, y <= v, y >= u + v - 1, the budget linear in y) with the binaries relaxed to [0, 1]. Written as
max obj.z subject to K z <= b, 0 <= z <= 1, every dual point y >= 0 bounds it (weak duality, box kept inside):

    obj.z <= y.b + sum_j max(0, obj_j - (K^T y)_j)     for every feasible z,

so the duals need not be optimal to give a valid number. They are found by PDHG (Chambolle & Pock 2011) with the
diagonal preconditioning of Pock & Chambolle (ICCV 2011), rows scaled to unit max norm, and restarts to the average
iterate when its dual bound is the better one (as in PDLP, Applegate et al., NeurIPS 2021): O(iterations * nnz(K)).

Why: on CIFAR ResNets this LP is far tighter than the count DP with subgradient multipliers (ResNet-20, 50 % FLOPs:
433.18 against 433.60 at the root; integral on the 32- and 64-wide stages), and its duals, read as decomposition
multipliers (`multipliers_from_duals`), carry that strength into the DP's count tables and block tables.
"""

from __future__ import annotations

import time
from typing import NamedTuple

import numpy as np

from ._channels_layout import Flat, canonical_from_flat, f1_model, layout

STALL = 1e-7  # relative rise of the dual bound over ten restarts below which PDHG stops


class LPDuals(NamedTuple):
    """Duals of the F1 LP relaxation per row of :class:`F1Model` (>= 0; on rows ``lo <= a z`` they price ``lo``),
    the upper bound they prove on the relaxation (hence on the QCQP), the iterations run and the model."""

    y: np.ndarray
    bound: float
    iterations: int
    model: object
    lay: object


class PDHG:
    """Preconditioned PDHG on min cost.z s.t. k z <= b, 0 <= z <= 1 (``k`` scipy CSR) that can be continued: each
    :meth:`run` goes on from the last iterate. ``best`` is the best lower bound on the minimum proven at a restart,
    ``best_y`` (>= 0, in the rows of ``k``) the duals that prove it."""

    def __init__(self, k, b, cost):
        from scipy.sparse import diags

        row_max = np.asarray(abs(k).max(axis=1).todense()).ravel()
        self.r = 1.0 / np.where(row_max > 0, row_max, 1.0)
        self.k = (diags(self.r) @ k).tocsr()
        self.b = b * self.r
        self.kt = self.k.T.tocsr()
        absk = abs(self.k)
        col = np.asarray(absk.sum(axis=0)).ravel()
        row = np.asarray(absk.sum(axis=1)).ravel()
        self.tau = 1.0 / np.where(col > 0, col, 1.0)
        self.sig = 1.0 / np.where(row > 0, row, 1.0)
        self.cost = cost
        self.z = np.zeros(self.k.shape[1])
        self.y = np.zeros(self.k.shape[0])
        self.best = self._dual_value(self.y)
        self._best_y = self.y.copy()
        self.iterations = 0
        self.stalled = 0

    @property
    def best_y(self):
        return self._best_y * self.r

    @property
    def converged(self) -> bool:
        """Ten restarts in a row raised the bound by less than STALL (relative): running on is pointless."""
        return self.stalled >= 10

    def _dual_value(self, y):
        return float(-(y @ self.b) + np.minimum(self.cost + self.kt @ y, 0.0).sum())

    def run(self, iters: int, deadline: float = np.inf, target: float = np.inf, restart: int = 100):
        """Iterate until ``iters`` iterations in all, past ``deadline`` (perf_counter), once ``best`` reaches
        ``target``, or until :attr:`converged`; the checks are made at every restart (each ``restart`` iterations,
        to the average iterate when its dual bound is the better)."""
        ks, kt, bs, cost, tau, sig = self.k, self.kt, self.b, self.cost, self.tau, self.sig
        z, y = self.z, self.y
        z_sum, y_sum, cnt = np.zeros_like(z), np.zeros_like(y), 0
        while self.iterations < iters and not self.converged and self.best < target:
            self.iterations += 1
            z_new = np.clip(z - tau * (cost + kt @ y), 0.0, 1.0)
            y = np.maximum(0.0, y + sig * (ks @ (2.0 * z_new - z) - bs))
            z = z_new
            z_sum += z
            y_sum += y
            cnt += 1
            if cnt == restart or self.iterations == iters:
                y_avg = y_sum / cnt
                v_avg, v_last = self._dual_value(y_avg), self._dual_value(y)
                if v_avg > v_last:
                    z, y = z_sum / cnt, y_avg
                z_sum[:], y_sum[:], cnt = 0.0, 0.0, 0
                v = max(v_avg, v_last)
                self.stalled = self.stalled + 1 if v <= self.best + STALL * max(1.0, abs(self.best)) else 0
                if v > self.best:
                    self.best, self._best_y = v, y.copy()
                if time.perf_counter() > deadline:
                    break
        self.z, self.y = z, y


def pdhg_duals(k, b, cost, iters: int, deadline: float = np.inf, target: float = np.inf, restart: int = 100):
    """Approximate duals of min cost.z s.t. k z <= b, 0 <= z <= 1 (``k`` scipy CSR): (y >= 0, lower bound on the
    minimum that y proves, iterations run), by :class:`PDHG` from zero (see :meth:`PDHG.run` for the stops)."""
    pdhg = PDHG(k, b, cost)
    pdhg.run(iters, deadline, target, restart)
    return pdhg.best_y, pdhg.best, pdhg.iterations


class F1Relaxation:
    """The F1 LP relaxation of the group-free problem ``f`` under ``budget`` and its PDHG, continued by every
    :meth:`duals` call."""

    def __init__(self, f: Flat, budget: float):
        from scipy.sparse import vstack

        c = canonical_from_flat(f, budget)
        self.lay = layout(c)
        self.model = f1_model(c, self.lay)
        a = self.model.a
        self.up = np.flatnonzero(np.isfinite(self.model.hi))
        self.dn = np.flatnonzero(np.isfinite(self.model.lo))
        k = vstack([a[self.up], -a[self.dn]]).tocsr()
        b = np.concatenate([self.model.hi[self.up], -self.model.lo[self.dn]])
        self.pdhg = PDHG(k, b, -self.model.obj)

    def duals(self, iters: int, deadline: float = np.inf, target: float = -np.inf) -> LPDuals:
        """Run PDHG on to ``iters`` iterations in all (stopping early past ``deadline`` or once the bound is at most
        ``target``); the best duals so far."""
        self.pdhg.run(iters, deadline, -target)
        y_ineq = self.pdhg.best_y
        y = np.zeros(self.model.a.shape[0])
        y[self.up] += y_ineq[: self.up.size]
        y[self.dn] += y_ineq[self.up.size :]
        return LPDuals(y, -self.pdhg.best, self.pdhg.iterations, self.model, self.lay)


def lp_duals(f: Flat, budget: float, iters: int, deadline: float = np.inf, target: float = -np.inf) -> LPDuals:
    """Approximate duals of the F1 LP relaxation of the group-free problem ``f`` (see the module docstring) after
    at most ``iters`` PDHG iterations; the method stops early once the bound they prove is at most ``target``."""
    return F1Relaxation(f, budget).duals(iters, deadline, target)


def multipliers_from_duals(f: Flat, d: LPDuals):
    """Decomposition multipliers (eq, al, be), each (M + 1, cmax), in the roles of `_Ctx.optimize_multipliers`,
    read from the LP duals (unmasked: the caller keeps those its decomposition allows).

    al and be are the duals of the residual rows u_t <= v_t and v_t <= u_t + v_s. A channel that is one LP variable
    but two copies in the decomposition (the producer's row, the reader's column: eq, or al where zero-padding
    forces v = u) gets the multiplier that gives both copies the same reduced value: half the difference of what
    the reader's and the producer's product rows price it at (y <= u and y <= v, less y >= u + v - 1; the
    channel's linear objective and resource terms counted on the producer's side). Any choice is valid: it only
    moves value between the two copies.
    """
    model, lay, y = d.model, d.lay, d.y
    p = model.pu.size
    n = model.n
    alpha, beta, gamma = y[:p], y[p : 2 * p], y[2 * p : 3 * p]
    lam = y[3 * p]
    producer = np.bincount(model.pu, alpha - gamma, n) + model.lin_obj - lam * model.lin_res
    reader = np.bincount(model.pv, beta - gamma, n)
    shared = (reader - producer) / 2
    m = f.widths.size - 1
    eq = np.zeros((m + 1, f.cmax))
    al = np.zeros((m + 1, f.cmax))
    be = np.zeros((m + 1, f.cmax))
    for t in range(1, m + 1):
        w = f.widths[t]
        same = lay.uvar[t] == lay.vvar[t]
        if f.res_kind[t] == 0:
            eq[t, :w] = shared[lay.uvar[t]]
        else:
            al[t, :w] = np.where(same, -shared[lay.uvar[t]], 0.0)
    for r, tag in enumerate(model.tags):
        if tag[0] == "u<=v":
            al[tag[1], tag[2]] = y[3 * p + 1 + r]
        elif tag[0] == "fed":
            be[tag[1], tag[2]] = y[3 * p + 1 + r]
    return eq, al, be
