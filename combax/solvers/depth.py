r"""Latency-aware CNN depth compression: the exact two-stage DP, its Pareto front, and brute force.

A chain of ``L`` convs has positions ``0..L`` (position ``p`` is the feature map after conv ``p``). A *block*
``(i, j]`` merges convs ``i+1..j`` into one conv of latency ``T[i, j]``; an *activation segment* ``(i, j]``
between kept activations at ``i`` and ``j`` has importance ``I[i, j]``. NaN marks what is not allowed. The
solver picks activation positions ``A`` and cut positions ``S`` (``A ⊆ S ∪ {L}``) that solve

.. math::

    \max_{A \subseteq S \subseteq \{1..L-1\}} \sum_k I[a_{k-1}, a_k]
    \quad\text{s.t.}\quad \sum_k T[s_{k-1}, s_k] \le T_0,

with every ``(s_{k-1}, s_k]`` an allowed block and every ``(a_{k-1}, a_k]`` an allowed segment
(``a_0 = s_0 = 0``, last element ``L``). With boundary flags (MobileNetV2), the sequence is one of
*boundaries* ``b_k`` with flags ``α_k`` (activation kept or not; 0 only at ``optional`` positions) scored by
the chained importance ``I_ext[b_{k-1}, b_k, α_{k-1}, α_k]``.

Stage 1 computes ``T_opt[i, j]``, the fastest partition of ``(i, j]`` into allowed blocks; stage 2 picks the
boundaries under the budget, exactly (Pareto sets of (latency, importance) pairs, no rounding) or on a
discretised latency axis (the paper's knapsack DP, with ``ceil`` or the original ``floor`` rounding).

Reference: J. Kim, Y. Jeong, D. Lee, H. O. Song, "Efficient Latency-Aware CNN Depth Compression via Two-Stage
Dynamic Programming", ICML 2023, arXiv:2301.12187. Specification: ``specs/depth_dp.md``.

Example
-------
>>> import numpy as np
>>> from combax.solvers import depth
>>> T = np.full((5, 5), np.nan); I = np.full((5, 5), np.nan)
>>> for (i, j), t, v in zip([(0, 1), (1, 2), (2, 3), (3, 4), (0, 2), (1, 3), (2, 4), (0, 3), (1, 4), (0, 4)],
...                         [4, 4, 4, 4, 5, 9, 5, 10, 11, 14], [1, 1, 1, 1, 1.5, .5, 1.2, 1, 2.8, .2]):
...     T[i, j], I[i, j] = t, v
>>> sol = depth.solve(depth.DepthProblem(T, I), budget=15)
>>> sol.activations, sol.cuts, round(sol.objective, 6), sol.latency
((1,), (1, 2), 3.8, 13.0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from . import _depth_io, _depth_kernels
from ._depth_io import read_csv_table, read_importance, read_opt_time_csv, write_importance_csv
from ._status import Status

__all__ = [
    "DepthProblem",
    "DepthSolution",
    "ParetoFront",
    "ParetoPoint",
    "Stage1",
    "ChainStructure",
    "solve",
    "pareto_front",
    "brute_force",
    "milp_reference",
    "stage1",
    "optimal_time",
    "extended_importance",
    "evaluate",
    "discretise",
    "valid_blocks",
    "allowed_flags",
    "mbv2_structure",
    "vgg19_structure",
    "synthetic_importance",
    "random_problem",
    "read_csv_table",
    "read_opt_time_csv",
    "read_importance",
    "write_importance_csv",
    "load_npz",
    "save_npz",
    "BRUTE_FORCE_MAX_L",
    "MAX_STEPS",
]

BRUTE_FORCE_MAX_L = 12
"""Largest ``L`` :func:`brute_force` accepts (3^(L-1) pairs, up to 4^(L-1) with flags)."""

MAX_STEPS = 10_000_000
"""Largest discretised budget ``floor(budget / resolution)`` :func:`solve` accepts."""

_CUT, _ACT, _NOACT = _depth_kernels.CODE_CUT, _depth_kernels.CODE_ACT, _depth_kernels.CODE_NOACT


# ----------------------------------------------------------------------------------------------------------------
# problem


@dataclass(frozen=True, slots=True, eq=False)
class DepthProblem:
    """A depth-compression instance: latency and importance tables of a chain of ``L`` convs.

    Parameters
    ----------
    latency : array_like, shape (L+1, L+1)
        ``latency[i, j]`` (``i < j``) is the latency of convs ``i+1..j`` merged into one; NaN = not allowed.
        Entries with ``i >= j`` are ignored. Allowed entries must be finite and ``>= 0``.
    importance : array_like, shape (L+1, L+1) or (L+1, L+1, 2, 2)
        ``importance[i, j]`` is the importance of an activation segment ``(i, j]`` (activations kept at ``i`` and
        ``j``, none inside); NaN = not allowed. With boundary flags, ``importance[i, j, x, y]`` is the raw
        importance ``h`` with the activation at ``i`` kept iff ``x = 1`` and at ``j`` iff ``y = 1``.
    optional : sequence of int
        Positions in ``1..L`` whose boundary may carry no activation (flag 0), e.g. MobileNetV2 block ends.
        Requires flagged importance. Entries of ``importance`` with a 0 flag at a position not in ``optional``
        (and at position 0) are ignored.

    Attributes
    ----------
    n_layers : int, ``L``.
    flagged : bool, whether ``importance`` has the flag axes.
    time_opt : (L+1, L+1) array, the stage-1 optimal times ``T_opt`` (NaN where no partition exists).
    importance_ext : (L+1, L+1, 2, 2) array, ``I_ext`` on the allowed quadruples ``E`` (NaN elsewhere); for a plain
        problem only ``[..., 1, 1]`` is used and equals ``importance``.
    min_latency : float, the smallest latency of any feasible solution (``inf`` if none exists).

    Notes
    -----
    The allowed quadruples are ``E = {(i, j, x, y): importance finite, T_opt[i, j] finite, x = 1 or i ∈ optional,
    y = 1 or j ∈ optional}``, and ``x = 1`` when ``i = 0``. Stage 1 and ``I_ext`` are computed once, at
    construction (``O(L^3)``).
    """

    latency: np.ndarray
    importance: np.ndarray
    optional: tuple[int, ...] = ()
    time_opt: np.ndarray = field(init=False, repr=False)
    importance_ext: np.ndarray = field(init=False, repr=False)
    min_latency: float = field(init=False, repr=False)
    _parent: np.ndarray = field(init=False, repr=False)
    _edges: tuple = field(init=False, repr=False)

    def __post_init__(self):
        latency, importance, optional = _problem_iv(self.latency, self.importance, self.optional)
        object.__setattr__(self, "latency", latency)
        object.__setattr__(self, "importance", importance)
        object.__setattr__(self, "optional", optional)
        s1 = stage1(latency)
        object.__setattr__(self, "time_opt", s1.time)
        object.__setattr__(self, "_parent", s1.parent)
        h = _allowed_h(importance, optional, s1.time)
        iext = _depth_kernels._extend_importance_kernel(h)
        iext.setflags(write=False)
        object.__setattr__(self, "importance_ext", iext)
        edges = _edge_list(s1.time, iext)
        object.__setattr__(self, "_edges", edges)
        n = latency.shape[0]
        e_i, e_x, e_m, e_a, e_lat, _ = edges
        best = _depth_kernels._min_latency_kernel(n, e_i, e_x, e_m, e_a, e_lat)
        object.__setattr__(self, "min_latency", float(best[n - 1].min()))

    @property
    def n_layers(self) -> int:
        return self.latency.shape[0] - 1

    @property
    def flagged(self) -> bool:
        return self.importance.ndim == 4


def _problem_iv(latency, importance, optional):
    """Validate and canonicalise the tables (float64, C order, read-only copies; NaN below the diagonal)."""
    latency = np.array(latency, dtype=np.float64, order="C")
    if latency.ndim != 2 or latency.shape[0] != latency.shape[1]:
        raise ValueError(f"`latency` must be a square array of shape (L+1, L+1); got shape {latency.shape}")
    n = latency.shape[0]
    if n < 2:
        raise ValueError(
            f"`latency` must describe at least one conv (shape (2, 2) or larger); got shape {latency.shape}"
        )
    importance = np.array(importance, dtype=np.float64, order="C")
    if importance.shape not in ((n, n), (n, n, 2, 2)):
        raise ValueError(
            f"`importance` must have shape {(n, n)} or {(n, n, 2, 2)} (with boundary flags) to match `latency`; "
            f"got shape {importance.shape}"
        )
    upper = np.triu(np.ones((n, n), dtype=bool), 1)
    latency[~upper] = np.nan
    bad = upper & np.isinf(latency)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise ValueError(f"`latency` must be finite or NaN (not allowed); got {latency[i, j]} at block ({i}, {j}]")
    neg = upper & (latency < 0)
    if neg.any():
        i, j = np.argwhere(neg)[0]
        raise ValueError(f"`latency` must be non-negative where allowed; got {latency[i, j]} at block ({i}, {j}]")
    if np.isinf(importance).any():
        idx = tuple(int(v) for v in np.argwhere(np.isinf(importance))[0])
        raise ValueError(f"`importance` must be finite or NaN (not allowed); got {importance[idx]} at {idx}")
    importance[~upper] = np.nan
    try:
        opt = tuple(sorted({int(p) for p in optional}))
    except (TypeError, ValueError):
        raise ValueError(f"`optional` must be a sequence of integer positions; got {optional!r}") from None
    if any(int(p) != p for p in optional):
        raise ValueError(f"`optional` must be a sequence of integer positions; got {optional!r}")
    if opt and importance.ndim != 4:
        raise ValueError(
            f"`optional` needs boundary flags: `importance` must have shape {(n, n, 2, 2)} when `optional` is "
            f"given; got shape {importance.shape}"
        )
    out = [p for p in opt if not 1 <= p <= n - 1]
    if out:
        raise ValueError(f"`optional` positions must lie in 1..L = 1..{n - 1}; got {out}")
    latency.setflags(write=False)
    importance.setflags(write=False)
    return latency, importance, opt


def _allowed_h(importance, optional, topt):
    """The raw importance restricted to ``E`` as an (n, n, 2, 2) array (NaN outside ``E``)."""
    n = importance.shape[0]
    if importance.ndim == 2:
        h = np.full((n, n, 2, 2), np.nan)
        h[:, :, 1, 1] = importance
    else:
        h = importance.copy()
    zero_ok = np.zeros(n, dtype=bool)
    zero_ok[list(optional)] = True
    h[~zero_ok, :, 0, :] = np.nan
    h[:, ~zero_ok, :, 0] = np.nan
    h[np.isnan(topt)] = np.nan
    return np.ascontiguousarray(h)


def _edge_list(topt, iext):
    """Stage-2 edges ``(i, x) -> (m, a)`` of the allowed quadruples, sorted by ``(m, a, i, x)``."""
    i, m, x, a = np.nonzero(~np.isnan(iext))
    order = np.lexsort((x, i, a, m))
    i, m, x, a = i[order], m[order], x[order], a[order]
    return (
        np.ascontiguousarray(i, dtype=np.int64),
        np.ascontiguousarray(x, dtype=np.int64),
        np.ascontiguousarray(m, dtype=np.int64),
        np.ascontiguousarray(a, dtype=np.int64),
        np.ascontiguousarray(topt[i, m]),
        np.ascontiguousarray(iext[i, m, x, a]),
    )


# ----------------------------------------------------------------------------------------------------------------
# stage 1 and the chained importance


@dataclass(frozen=True, slots=True, eq=False)
class Stage1:
    """Stage-1 result: optimal times and the partition of each segment.

    Attributes
    ----------
    time : (L+1, L+1) float array, ``T_opt[i, j]`` (NaN where ``(i, j]`` has no partition into allowed blocks, or,
        for ``method="original"``, where ``(i, j]`` is not itself an allowed block).
    parent : (L+1, L+1) int array, the last cut before ``j`` in the optimal partition of ``(i, j]`` (``i`` for the
        single block, -1 where none).
    """

    time: np.ndarray
    parent: np.ndarray

    def breaks(self, i: int, j: int) -> tuple[int, ...]:
        """Positions ``(i, c_1, ..., j)`` of the optimal partition of ``(i, j]`` (the released ``breaks`` column)."""
        if not 0 <= i < j < self.time.shape[0] or np.isnan(self.time[i, j]):
            raise ValueError(f"`(i, j)` must be a segment with a partition; got ({i}, {j})")
        out = [j]
        k = int(self.parent[i, j])
        while k > i:
            out.append(k)
            k = int(self.parent[i, k])
        out.append(i)
        return tuple(reversed(out))


def stage1(latency, *, method: Literal["general", "original"] = "general") -> Stage1:
    r"""Stage 1: the fastest partition of every segment ``(i, j]`` into allowed blocks.

    .. math::

        T_{opt}[i, j] = \min_{i = c_0 < c_1 < \dots < c_r = j,\ (c_{t-1}, c_t] \text{ allowed}} \sum_t T[c_{t-1}, c_t]

    Parameters
    ----------
    latency : (L+1, L+1) array_like, NaN = not allowed (validated as in :class:`DepthProblem`).
    method : ``"general"`` (default) or ``"original"``
        ``"general"``: a 1-D shortest path inside each segment, ``f[i] = 0``, ``f[m] = min_k f[k] + T[k, m]``;
        defined for every segment that has a partition. ``"original"``: the paper's recurrence
        ``T_opt[i,j] = min(T[i,j], min_{(i,k),(k,j) allowed} T_opt[i,k] + T[k,j])``, which needs every prefix to be
        an allowed block and is defined on allowed blocks only (reproduces the released ``opt_time`` tables).

    Returns
    -------
    Stage1

    Notes
    -----
    Time ``O(L^3)``, memory ``O(L^2)``. Ties: the single block wins, then the smallest last cut ``k``.
    The general form is never worse than the original one.
    """
    if method not in ("general", "original"):
        raise ValueError(f"`method` must be 'general' or 'original'; got {method!r}")
    n = np.shape(latency)[0] if np.ndim(latency) == 2 else 0
    latency, _, _ = _problem_iv(latency, np.full((n, n), np.nan), ())
    kernel = _depth_kernels._stage1_kernel if method == "general" else _depth_kernels._stage1_original_kernel
    topt, parent = kernel(latency)
    topt.setflags(write=False)
    parent.setflags(write=False)
    return Stage1(topt, parent)


def optimal_time(latency, *, method: Literal["general", "original"] = "general") -> np.ndarray:
    """``T_opt`` of :func:`stage1` as an (L+1, L+1) array."""
    return stage1(latency, method=method).time


def extended_importance(problem: DepthProblem) -> np.ndarray:
    r"""The chained importance ``I_ext`` of a problem (an (L+1, L+1, 2, 2) array, NaN outside ``E``).

    For ``(i, j, x, y) ∈ E``,

    .. math::

        I_{ext}[i,j,x,y] = \max\Big(h[i,j,x,y],\ \max_{i = c_0 < c_1 < \dots < c_r = j,\ r \ge 2}
        \sum_t h[c_{t-1}, c_t, φ_{t-1}, φ_t]\Big),\quad φ = (x, 0, \dots, 0, y),

    over chains whose pieces are all in ``E``: a segment's importance may be estimated by pieces that meet at
    activation-free optional positions. This is the general form (a longest path inside the segment) of the
    paper's recurrence ``max(h[i,j,x,y], max_k I_ext[i,k,x,0] + h[k,j,0,y])``, which also requires every prefix
    ``(i, c_t, x, 0)`` to be in ``E``; with the original MobileNetV2 flag set (:func:`allowed_flags`,
    ``exclude_zeros=True``) no ``(·, ·, 0, 0)`` piece exists, chains have at most two pieces and the two agree.
    Time ``O(L^3)``. For a plain problem ``I_ext[..., 1, 1] = importance``.
    """
    return problem.importance_ext


# ----------------------------------------------------------------------------------------------------------------
# results


@dataclass(frozen=True, slots=True, eq=False)
class DepthSolution:
    """Result of :func:`solve` and :func:`brute_force`.

    Attributes
    ----------
    status : Status
        ``"optimal"`` or ``"infeasible"`` (no solution within the budget).
    activations : tuple of int
        Sorted positions whose activation is kept (``A``). ``L`` is listed only for flagged problems whose last
        boundary keeps its activation; for plain problems the chain end ``L`` is implicit.
    cuts : tuple of int
        Sorted cut positions ``S`` in ``1..L-1`` (``A \\ {L} ⊆ S``); between consecutive cuts the convs are merged.
    boundaries : tuple of int
        Activation-segment ends in ``1..L`` (``L`` included): activations plus flag-0 boundaries.
    flags : tuple of int
        Flag (1 = activation kept) of each boundary.
    objective : float or None
        Σ importance over the activation segments (``I_ext`` with flags), recomputed from the tables; None if
        infeasible.
    latency : float or None
        Σ ``T_opt`` over the activation segments = Σ ``T`` over the merged blocks, recomputed from the tables, left
        to right; None if infeasible.
    int_latency : int or None
        Σ of the rounded segment latencies (discretised modes only).
    budget, resolution, rounding : the request (``resolution`` None = exact).
    min_latency : float
        Smallest latency of any solution (``inf`` if the problem has none); tells how far an infeasible budget is.
    message : str
    """

    status: Status
    activations: tuple[int, ...]
    cuts: tuple[int, ...]
    boundaries: tuple[int, ...]
    flags: tuple[int, ...]
    objective: float | None
    latency: float | None
    int_latency: int | None
    budget: float
    resolution: float | None
    rounding: str | None
    min_latency: float
    message: str

    @property
    def success(self) -> bool:
        return self.status == Status.OPTIMAL


@dataclass(frozen=True, slots=True)
class ParetoPoint:
    """One non-dominated solution: its latency, objective, activations and cuts (as in :class:`DepthSolution`)."""

    latency: float
    objective: float
    activations: tuple[int, ...]
    cuts: tuple[int, ...]
    boundaries: tuple[int, ...]
    flags: tuple[int, ...]


@dataclass(frozen=True, slots=True, eq=False)
class ParetoFront:
    """Every non-dominated (latency, objective) solution, sorted by increasing latency (and objective).

    Attributes
    ----------
    latency, objective : (k,) float arrays.
    codes : (k, L+1) int8 array, per position: 0 no cut, 1 cut, 2 kept activation, 3 boundary without activation.
    flagged : bool, whether the problem had boundary flags (controls whether ``L`` is listed in activations).

    ``len(front)``, ``front[r]`` (a :class:`ParetoPoint`), iteration and :meth:`best` are supported.
    """

    latency: np.ndarray
    objective: np.ndarray
    codes: np.ndarray
    flagged: bool

    def __len__(self) -> int:
        return int(self.latency.shape[0])

    def __getitem__(self, r: int) -> ParetoPoint:
        acts, cuts, bnd, flags = _decode(self.codes[r], self.flagged)
        return ParetoPoint(float(self.latency[r]), float(self.objective[r]), acts, cuts, bnd, flags)

    def __iter__(self):
        return (self[r] for r in range(len(self)))

    @property
    def points(self) -> list[ParetoPoint]:
        return list(self)

    def best_index(self, budget: float) -> int:
        """Index of the best point with latency ``<= budget`` (-1 if none)."""
        return int(np.searchsorted(self.latency, budget, side="right")) - 1


def _decode(code, flagged):
    code = np.asarray(code)
    n = code.shape[0]
    pos = np.arange(n)
    bmask = code >= _ACT
    boundaries = tuple(int(p) for p in pos[bmask])
    flags = tuple(int(c == _ACT) for c in code[bmask])
    act = code == _ACT
    if not flagged:
        act[n - 1] = False
    activations = tuple(int(p) for p in pos[act])
    cuts = tuple(int(p) for p in pos[1 : n - 1][code[1 : n - 1] >= _CUT])
    return activations, cuts, boundaries, flags


def evaluate(problem: DepthProblem, boundaries, flags=None) -> tuple[float, float]:
    """(objective, latency) of a boundary sequence, from the tables (NaN if a segment is not allowed).

    ``boundaries`` are the segment ends in ``1..L`` (``L`` last); ``flags`` default to all 1. Sums run left to
    right, exactly as the DP accumulates them.
    """
    b = np.concatenate([[0], np.asarray(boundaries, dtype=np.int64)])
    f = np.concatenate([[1], np.ones(len(b) - 1, np.int64) if flags is None else np.asarray(flags, np.int64)])
    if len(b) < 2 or b[-1] != problem.n_layers:
        raise ValueError(f"`boundaries` must end at L = {problem.n_layers}; got {tuple(boundaries)}")
    lat = problem.time_opt[b[:-1], b[1:]]
    imp = problem.importance_ext[b[:-1], b[1:], f[:-1], f[1:]]
    return float(np.cumsum(imp)[-1]), float(np.cumsum(lat)[-1])


# ----------------------------------------------------------------------------------------------------------------
# stage 2


def _budget_iv(budget, resolution, rounding):
    try:
        budget = float(budget)
    except (TypeError, ValueError):
        raise ValueError(f"`budget` must be a finite number; got {budget!r}") from None
    if not math.isfinite(budget):
        raise ValueError(f"`budget` must be a finite number; got {budget}")
    if resolution is not None:
        try:
            resolution = float(resolution)
        except (TypeError, ValueError):
            raise ValueError(f"`resolution` must be a positive finite number or None; got {resolution!r}") from None
        if not (math.isfinite(resolution) and resolution > 0):
            raise ValueError(f"`resolution` must be a positive finite number or None; got {resolution}")
        if rounding not in ("ceil", "floor"):
            raise ValueError(f"`rounding` must be 'ceil' or 'floor'; got {rounding!r}")
        steps = math.floor(budget / resolution)
        if steps > MAX_STEPS:
            raise ValueError(
                f"`budget / resolution` must be at most {MAX_STEPS} steps; got {steps} "
                "(use a coarser `resolution`, or resolution=None for the exact solver)"
            )
    elif rounding not in ("ceil", "floor"):
        raise ValueError(f"`rounding` must be 'ceil' or 'floor'; got {rounding!r}")
    return budget, resolution, rounding


def discretise(values, resolution: float, rounding: str, cap: int = 2**53) -> np.ndarray:
    """Integer latencies ``ceil(values / resolution)`` or ``floor(values / resolution)``, clipped to ``cap``.

    NaN maps to ``cap``. Both :func:`solve` and :func:`brute_force` use this one formula, so rounding at exact
    multiples of the resolution is decided identically.
    """
    v = np.asarray(values, dtype=np.float64) / resolution
    r = np.ceil(v) if rounding == "ceil" else np.floor(v)
    return np.where(np.isnan(r), cap, np.minimum(r, cap)).astype(np.int64)


def _solution(problem, status, code, budget, resolution, rounding, int_latency, message, values=None):
    if status != Status.OPTIMAL:
        return DepthSolution(
            Status.INFEASIBLE,
            (),
            (),
            (),
            (),
            None,
            None,
            None,
            budget,
            resolution,
            rounding,
            problem.min_latency,
            message,
        )
    acts, cuts, bnd, flags = _decode(code, problem.flagged)
    obj, lat = evaluate(problem, bnd, flags) if values is None else values
    return DepthSolution(
        Status.OPTIMAL, acts, cuts, bnd, flags, obj, lat, int_latency, budget, resolution, rounding,
        problem.min_latency, message,
    )  # fmt: skip


def solve(
    problem: DepthProblem,
    budget: float,
    *,
    resolution: float | None = None,
    rounding: Literal["ceil", "floor"] = "ceil",
) -> DepthSolution:
    r"""Best activations and cuts within a latency budget (stage 2 of the two-stage DP).

    Maximises :math:`\sum_k I_{ext}[b_{k-1}, b_k, α_{k-1}, α_k]` over boundary sequences
    ``0 = b_0 < ... < b_r = L`` with flags (``α_0 = 1``; 0 only at optional positions) such that every
    ``(b_{k-1}, b_k, α_{k-1}, α_k)`` is allowed and the latency constraint holds:

    * ``resolution=None`` (exact): :math:`\sum_k T_{opt}[b_{k-1}, b_k] \le T_0` in float arithmetic, no
      discretisation. States keep the non-dominated (latency, importance) pairs; pairs above the budget are dropped.
    * ``resolution=r``: :math:`\sum_k g[b_{k-1}, b_k] \le B` with ``B = floor(T0 / r)`` and
      ``g = ceil(T_opt / r)`` (``rounding="ceil"``: the real latency never exceeds ``T0``) or ``floor(T_opt / r)``
      (``"floor"``, the original implementation: may exceed ``T0`` by up to #segments * r). DP over
      ``D[m, a, t]``, the best importance ending at boundary ``(m, a)`` with integer latency exactly ``t``.

    Parameters
    ----------
    problem : DepthProblem
    budget : float, ``T0`` in the latency table's units.
    resolution : float or None, the latency step of the discretised DP (e.g. 0.05 ms), None for exact.
    rounding : ``"ceil"`` (default) or ``"floor"``, used only with a resolution.

    Returns
    -------
    DepthSolution
        ``status="infeasible"`` (with ``min_latency``) if no solution fits; all solution fields empty / None then.

    Raises
    ------
    ValueError
        For a budget or resolution that is not a finite number, a resolution that is not positive, an unknown
        rounding, or more than :data:`MAX_STEPS` discretised steps.

    Notes
    -----
    Time: discretised ``O(|E| B)`` with memory ``O(L B)``; exact ``O(Σ_E |front(i, x)| log)``, with fronts bounded
    by the number of distinct achievable latencies (worst case exponential in ``L``, small in practice). Stage 1 and
    ``I_ext`` are computed once per problem (``O(L^3)``). Ties: larger objective, then smaller (integer) latency,
    then the activation kept at ``L``, then the leftmost last boundary. The objective and latency reported are
    recomputed from the tables by summing segments left to right.
    """
    budget, resolution, rounding = _budget_iv(budget, resolution, rounding)
    n = problem.latency.shape[0]
    e_i, e_x, e_m, e_a, e_lat, e_v = problem._edges
    if resolution is None:
        lat, _obj, codes = _depth_kernels._pareto_kernel(n, e_i, e_x, e_m, e_a, e_lat, e_v, budget, problem._parent)
        if lat.shape[0] == 0:
            return _solution(
                problem, Status.INFEASIBLE, None, budget, None, None, None,
                _infeasible_message(problem, budget),
            )  # fmt: skip
        return _solution(problem, Status.OPTIMAL, codes[-1], budget, None, None, None, "exact solve")
    B = math.floor(budget / resolution)
    e_g = discretise(e_lat, resolution, rounding, cap=B + 1)
    status, _obj, t, code = _depth_kernels._knapsack_kernel(n, e_i, e_x, e_m, e_a, e_g, e_v, B, problem._parent)
    if status != 0:
        return _solution(
            problem, Status.INFEASIBLE, None, budget, resolution, rounding, None,
            _infeasible_message(problem, budget, resolution, rounding),
        )  # fmt: skip
    return _solution(
        problem, Status.OPTIMAL, code, budget, resolution, rounding, int(t),
        f"discretised solve: {t} of {B} steps of {resolution:g} ({rounding})",
    )  # fmt: skip


def _infeasible_message(problem, budget, resolution=None, rounding=None):
    if not math.isfinite(problem.min_latency):
        return "the problem has no feasible solution at any budget (no allowed boundary sequence reaches L)"
    msg = f"budget {budget:g} is infeasible: the minimum reachable latency is {problem.min_latency:g}"
    if resolution is not None:
        msg += f" (with {rounding} rounding at resolution {resolution:g}, rounded segment latencies may not fit)"
    return msg


def pareto_front(problem: DepthProblem) -> ParetoFront:
    """Every non-dominated (latency, objective) solution, in one exact solve.

    The front of :func:`solve` with ``resolution=None`` and no budget: ``solve(problem, T0)`` equals the point of
    largest objective with latency ``<= T0`` (:meth:`ParetoFront.best_index`). Sorted by latency; objectives
    strictly increase. Complexity as for the exact :func:`solve`.
    """
    n = problem.latency.shape[0]
    e_i, e_x, e_m, e_a, e_lat, e_v = problem._edges
    lat, obj, codes = _depth_kernels._pareto_kernel(n, e_i, e_x, e_m, e_a, e_lat, e_v, np.inf, problem._parent)
    for a in (lat, obj, codes):
        a.setflags(write=False)
    return ParetoFront(lat, obj, codes, problem.flagged)


# ----------------------------------------------------------------------------------------------------------------
# brute force (the oracle)


def brute_force(
    problem: DepthProblem,
    budget: float,
    *,
    resolution: float | None = None,
    rounding: Literal["ceil", "floor"] = "ceil",
) -> DepthSolution:
    """Solve by enumerating every pair ``A ⊆ S`` (and every flag at optional positions); small ``L`` only.

    Each position ``1..L-1`` is not cut, cut, a kept activation or (if optional) a boundary without activation;
    the flag at ``L`` is free if ``L`` is optional: ``3^(L-1)`` pairs, up to ``4^(L-1) * 2`` with flags. A pair is
    valid if every merged block ``(s_{k-1}, s_k]`` has a latency and every boundary segment is allowed. Its latency
    is the sum of the block latencies (left to right inside each segment, segments left to right); in a
    discretised mode each segment's latency is rounded separately. The importance of a flagged segment is the best
    chain of raw pieces meeting at flag-0 optional positions, found by enumerating the chains (independently of the
    DP). Same semantics, ties and result type as :func:`solve`; the work is vectorised with NumPy.

    Raises
    ------
    ValueError
        If ``L > BRUTE_FORCE_MAX_L``, or for a budget / resolution / rounding that :func:`solve` rejects.
    """
    budget, resolution, rounding = _budget_iv(budget, resolution, rounding)
    L = problem.n_layers
    if L > BRUTE_FORCE_MAX_L:
        raise ValueError(
            f"`problem` is too large for `brute_force`: it enumerates 3^(L-1) pairs and supports L <= "
            f"{BRUTE_FORCE_MAX_L}; got L = {L}"
        )
    codes, obj, lat, seg_lats = _enumerate(problem)
    if resolution is None:
        feasible = lat <= budget
        cost = lat
    else:
        B = math.floor(budget / resolution)
        cost = discretise(seg_lats, resolution, rounding)
        cost = np.where(np.isnan(seg_lats), 0, cost).sum(axis=1)
        feasible = cost <= B
    if not feasible.any():
        return _solution(
            problem, Status.INFEASIBLE, None, budget, resolution, rounding if resolution else None, None,
            _infeasible_message(problem, budget, resolution, rounding),
        )  # fmt: skip
    idx = np.flatnonzero(feasible)
    best = obj[idx].max()
    idx = idx[obj[idx] == best]
    idx = idx[cost[idx] == cost[idx].min()]
    r = idx[0]
    int_lat = None if resolution is None else int(cost[r])
    return _solution(
        problem, Status.OPTIMAL, codes[r], budget, resolution, rounding if resolution else None, int_lat,
        f"brute force over {len(obj)} valid pairs", (float(obj[r]), float(lat[r])),
    )  # fmt: skip


def milp_reference(problem: DepthProblem, budget: float) -> float | None:
    """Optimal objective of the exact problem by an independent MILP (HiGHS through ``scipy.optimize.milp``).

    A resource-constrained longest path: one binary variable per allowed quadruple ``(i, m, x, a)`` (an edge from
    boundary state ``(i, x)`` to ``(m, a)``), flow conservation from ``(0, 1)`` to one of ``(L, 0), (L, 1)``,
    ``Σ T_opt x <= budget``, maximise ``Σ I_ext x``. For cross-checking on instances too large for
    :func:`brute_force` (e.g. MobileNetV2, L = 50); ``None`` if infeasible. HiGHS works to a feasibility tolerance
    of about 1e-6, so compare objectives with a tolerance.
    """
    from scipy.optimize import Bounds, LinearConstraint, milp

    budget, _, _ = _budget_iv(budget, None, "ceil")
    iext, topt = problem.importance_ext, problem.time_opt
    edges = np.argwhere(~np.isnan(iext))  # rows (i, m, x, a)
    if len(edges) == 0:
        return None
    n = problem.n_layers + 1
    src = 2 * edges[:, 0] + edges[:, 2]
    dst = 2 * edges[:, 1] + edges[:, 3]
    A = np.zeros((2 * n, len(edges)))
    np.add.at(A, (src, np.arange(len(edges))), -1.0)
    np.add.at(A, (dst, np.arange(len(edges))), 1.0)
    rhs = np.zeros(2 * n)
    rhs[1] = -1.0  # one unit leaves (0, 1)
    inner = np.ones(2 * n, dtype=bool)
    inner[[2 * (n - 1), 2 * (n - 1) + 1]] = False
    ends = (edges[:, 1] == n - 1).astype(np.float64)
    constraints = [
        LinearConstraint(A[inner], rhs[inner], rhs[inner]),
        LinearConstraint(ends[None], 1.0, 1.0),
        LinearConstraint(topt[edges[:, 0], edges[:, 1]][None], -np.inf, budget),
    ]
    value = iext[edges[:, 0], edges[:, 1], edges[:, 2], edges[:, 3]]
    res = milp(-value, constraints=constraints, integrality=np.ones(len(edges)), bounds=Bounds(0, 1))
    return None if res.x is None else float(-res.fun)


def _chain_importance(problem) -> np.ndarray:
    """I_ext by enumerating chains of raw pieces (the oracle's own computation; exponential, small L only)."""
    n = problem.latency.shape[0]
    T = problem.latency
    # partitionable segments, by a direct reachability sweep over the raw blocks
    reach = np.zeros((n, n), dtype=bool)
    for i in range(n):
        ok = np.zeros(n, dtype=bool)
        ok[i] = True
        for m in range(i + 1, n):
            ok[m] = any(ok[k] and not np.isnan(T[k, m]) for k in range(i, m))
        reach[i] = ok
    reach &= np.triu(np.ones((n, n), dtype=bool), 1)
    opt = set(problem.optional)
    if problem.flagged:
        h = problem.importance
    else:
        h = np.full((n, n, 2, 2), np.nan)
        h[:, :, 1, 1] = problem.importance

    def allowed(i, j, x, y):
        return reach[i, j] and not np.isnan(h[i, j, x, y]) and (x == 1 or (i in opt and i > 0)) and (y == 1 or j in opt)

    iext = np.full((n, n, 2, 2), np.nan)
    for i in range(n):
        for j in range(i + 1, n):
            inner = [k for k in range(i + 1, j) if k in opt]
            for x in (0, 1):
                for y in (0, 1):
                    if not allowed(i, j, x, y):
                        continue
                    best = -np.inf
                    for mask in range(1 << len(inner)):
                        pts = [i] + [inner[t] for t in range(len(inner)) if mask >> t & 1] + [j]
                        fl = [x] + [0] * (len(pts) - 2) + [y]
                        if all(allowed(pts[t], pts[t + 1], fl[t], fl[t + 1]) for t in range(len(pts) - 1)):
                            v = 0.0
                            for t in range(len(pts) - 1):
                                v = v + h[pts[t], pts[t + 1], fl[t], fl[t + 1]]
                            best = max(best, v)
                    iext[i, j, x, y] = best
    return iext


def _enumerate(problem):
    """Every (A, S, flags) assignment: codes (N, L+1), objective, latency, per-segment latencies (N, L)."""
    L = problem.n_layers
    n = L + 1
    opt = set(problem.optional)
    choices = [[0]] + [
        [0, _CUT, _ACT, _NOACT] if p in opt else [0, _CUT, _ACT] for p in range(1, L)
    ] + [[_ACT, _NOACT] if L in opt else [_ACT]]  # fmt: skip
    grids = np.meshgrid(*[np.asarray(c, dtype=np.int8) for c in choices], indexing="ij")
    codes = np.stack([g.ravel() for g in grids], axis=1)
    N = codes.shape[0]
    T = problem.latency
    iext = _chain_importance(problem)
    prev_s = np.zeros(N, np.int64)
    prev_b = np.zeros(N, np.int64)
    prev_f = np.ones(N, np.int64)
    seg = np.zeros(N)
    lat = np.zeros(N)
    obj = np.zeros(N)
    ok = np.ones(N, dtype=bool)
    seg_lats = np.full((N, L), np.nan)
    for p in range(1, n):
        c = codes[:, p]
        in_s = c > 0
        piece = T[prev_s, p]
        ok &= ~(in_s & np.isnan(piece))
        seg = np.where(in_s, seg + piece, seg)
        prev_s = np.where(in_s, p, prev_s)
        is_b = c >= _ACT
        f = (c == _ACT).astype(np.int64)
        val = iext[prev_b, p, prev_f, f]
        ok &= ~(is_b & np.isnan(val))
        obj = np.where(is_b, obj + val, obj)
        lat = np.where(is_b, lat + seg, lat)
        seg_lats[:, p - 1] = np.where(is_b, seg, np.nan)
        seg = np.where(is_b, 0.0, seg)
        prev_b = np.where(is_b, p, prev_b)
        prev_f = np.where(is_b, f, prev_f)
    return codes[ok], obj[ok], lat[ok], seg_lats[ok]


# ----------------------------------------------------------------------------------------------------------------
# chain structure (which blocks may merge) and generated importance


@dataclass(frozen=True, slots=True)
class ChainStructure:
    """The mergeability structure of a conv chain.

    Attributes
    ----------
    n_layers : L.
    breaks : positions no block may straddle (stride / pooling breaks).
    residuals : ``(src, tgt)`` intervals of skip connections.
    optional : positions whose activation slot may stay empty (MobileNetV2 block ends), else ``()``.
    """

    n_layers: int
    breaks: tuple[int, ...]
    residuals: tuple[tuple[int, int], ...]
    optional: tuple[int, ...] = ()

    def valid_blocks(self) -> np.ndarray:
        """The (L+1, L+1) mask of allowed blocks (see :func:`valid_blocks`)."""
        return valid_blocks(self.n_layers, self.breaks, self.residuals)


def valid_blocks(n_layers: int, breaks=(), residuals=()) -> np.ndarray:
    """Mask of the allowed merged blocks ``(i, j]`` of a chain of ``n_layers`` convs.

    A block is allowed iff no break lies strictly inside it and it is laminar with every residual ``[s, t]``:
    disjoint from it (``j <= s`` or ``i >= t``), containing it (``i <= s`` and ``t <= j``), or inside it
    (``s <= i`` and ``j <= t``). This rule reproduces the released tables: 171 blocks for MobileNetV2, 36 for VGG19.

    Returns
    -------
    (L+1, L+1) bool array, True at allowed ``(i, j)`` with ``i < j``.
    """
    n = int(n_layers) + 1
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    ok = i < j
    for b in breaks:
        ok &= ~((i < b) & (b < j))
    for s, t in residuals:
        laminar = (j <= s) | (i >= t) | ((i <= s) & (t <= j)) | ((s <= i) & (j <= t))
        ok &= laminar
    return ok


def allowed_flags(valid, optional, *, exclude_zeros: bool = True) -> np.ndarray:
    """The original implementation's allowed flag quadruples ``E`` for MobileNetV2-like chains.

    For an allowed block ``(i, j]``: ``i = 0`` -> only ``(1, 1)``; ``i`` optional -> ``x ∈ {0, 1}, y = 1``; else ``j``
    optional -> ``x = 1, y ∈ {0, 1}``; else ``(1, 1)`` (``exclude_zeros=True``, 315 quadruples on MobileNetV2).
    With ``exclude_zeros=False`` every combination with 0 flags only at optional positions (position 0 is never
    optional; 405 quadruples on MobileNetV2).

    Returns
    -------
    (L+1, L+1, 2, 2) bool array.
    """
    valid = np.asarray(valid, dtype=bool)
    n = valid.shape[0]
    opt = np.zeros(n, dtype=bool)
    opt[list(optional)] = True
    opt[0] = False
    E = np.zeros((n, n, 2, 2), dtype=bool)
    oi = opt[:, None] & valid
    oj = opt[None, :] & valid
    E[:, :, 1, 1] = valid
    if exclude_zeros:
        E[:, :, 0, 1] = oi
        E[:, :, 1, 0] = oj & ~opt[:, None]
        E[0, :, 1, 0] = False
    else:
        E[:, :, 0, 1] = oi
        E[:, :, 1, 0] = oj
        E[:, :, 0, 0] = oi & oj
    return E


def mbv2_structure() -> ChainStructure:
    """MobileNetV2's compressible stack (``features[1:-1]``): L = 50, breaks, residuals and block ends (spec §1.2)."""
    residuals = ((5, 8), (11, 14), (14, 17), (20, 23), (23, 26), (26, 29), (32, 35), (35, 38), (41, 44), (44, 47))
    return ChainStructure(50, (5, 11, 20, 41), residuals, tuple(range(2, 51, 3)))


def vgg19_structure() -> ChainStructure:
    """VGG19-BN: L = 16 convs, breaks at the max-pools, no residuals."""
    return ChainStructure(16, (2, 4, 8, 12, 16), ())


def synthetic_importance(valid, optional=(), *, seed: int = 0, alpha: float = 1.2, exclude_zeros: bool = True):
    r"""A generated importance table with the shape of the paper's normalised measurements.

    The paper's tables (1-epoch fine-tune accuracy deltas) were never published. This generator mimics them: the
    raw accuracy change of a segment of ``n = j - i`` convs with no activation inside is

    .. math:: h = -0.3 (n - 1)^{1.5} (1 + 0.5 u) - 0.4 (1 + 0.5 u'),\qquad u, u' \sim U(-1, 1),

    minus ``0.15`` per boundary without activation; the paper's normalisation then adds ``alpha`` times the mean
    single-conv loss, ``I = h - alpha * mean(h over n = 1)``, which rewards keeping activations.

    Parameters
    ----------
    valid : (L+1, L+1) bool mask of allowed segments (e.g. :func:`valid_blocks`).
    optional : positions that may carry no activation; non-empty -> flagged (L+1, L+1, 2, 2) output with the
        quadruples of :func:`allowed_flags`.
    seed : int, for ``numpy.random.default_rng``.
    alpha : float, the normalisation weight (1.2 for MobileNetV2-1.4 in the paper).

    Returns
    -------
    (L+1, L+1) or (L+1, L+1, 2, 2) float array, NaN where not allowed.
    """
    valid = np.asarray(valid, dtype=bool)
    rng = np.random.default_rng(seed)
    n = valid.shape[0]
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    length = np.maximum(j - i, 1).astype(np.float64)
    u = rng.uniform(-1, 1, size=(2, n, n, 2, 2))
    h = -0.3 * (length[..., None, None] - 1) ** 1.5 * (1 + 0.5 * u[0]) - 0.4 * (1 + 0.5 * u[1])
    zeros = np.array([[2, 1], [1, 0]], dtype=np.float64)  # number of 0 flags in (x, y)
    h = h - 0.15 * zeros
    single = (j - i == 1) & valid
    shift = -alpha * h[single, 1, 1].mean()
    h = h + shift
    if optional:
        E = allowed_flags(valid, optional, exclude_zeros=exclude_zeros)
        return np.where(E, h, np.nan)
    return np.where(valid, h[:, :, 1, 1], np.nan)


def random_problem(
    n_layers: int,
    *,
    seed: int = 0,
    flagged: bool = False,
    integer: bool = False,
    p_missing: float = 0.3,
) -> DepthProblem:
    """A random instance for tests and benchmarks (deterministic in ``seed``).

    Single-conv blocks are allowed with probability 0.9, longer blocks with ``1 - p_missing``; latencies are
    integers in 1..9 x length (``integer=True``) or uniform in [0.5, 3) x length; importance entries are allowed
    with probability ``1 - p_missing``, integers in -3..4 or normal(0.5, 1). With ``flagged=True`` about 40 % of the
    positions ``1..L`` are optional and the importance has the flag axes.
    """
    rng = np.random.default_rng(seed)
    L = int(n_layers)
    n = L + 1
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    length = (j - i).astype(np.float64)
    keep = np.where(j - i == 1, rng.random((n, n)) < 0.9, rng.random((n, n)) >= p_missing) & (i < j)
    if integer:
        T = rng.integers(1, 10, size=(n, n)) * np.maximum(length, 1) // 2 + 1
    else:
        T = rng.uniform(0.5, 3.0, size=(n, n)) * np.sqrt(np.maximum(length, 1))
    T = np.where(keep, T, np.nan)
    shape = (n, n, 2, 2) if flagged else (n, n)
    I = rng.integers(-3, 5, size=shape).astype(np.float64) if integer else rng.normal(0.5, 1.0, size=shape)
    I = np.where(rng.random(shape) >= p_missing, I, np.nan)
    optional = tuple(int(p) for p in np.flatnonzero(rng.random(n) < 0.4) if p >= 1) if flagged else ()
    return DepthProblem(T, I, optional)


# ----------------------------------------------------------------------------------------------------------------
# problem files


def load_npz(path) -> DepthProblem:
    """Load a :class:`DepthProblem` from a combax ``.npz`` (format in :mod:`combax.solvers._depth_io`)."""
    d = _depth_io.load_npz(path)
    return DepthProblem(d["latency"], d["importance"], tuple(int(p) for p in d["optional"]))


def save_npz(path, problem: DepthProblem) -> None:
    """Save a :class:`DepthProblem` to a combax ``.npz`` (keys ``latency``, ``importance``, ``optional``)."""
    _depth_io.save_npz(path, problem.latency, problem.importance, problem.optional)
