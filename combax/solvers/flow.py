r"""General minimum-cost flow on an explicit network (the reference network solver of ``specs/hash_flow.md``).

.. math::

    \min_{f}\; \sum_{a} c_a f_a
    \quad\text{s.t.}\quad \sum_{a:\,\mathrm{tail}(a)=v} f_a - \sum_{a:\,\mathrm{head}(a)=v} f_a = b_v\ \ \forall v,
    \qquad 0 \le f_a \le u_a,

with integer supplies :math:`b` (:math:`\sum_v b_v = 0`; positive = source, negative = demand), integer capacities
:math:`u_a \in \{0, 1, \dots\} \cup \{\infty\}` and real costs :math:`c_a`. Integral data give an integral optimal
flow (total unimodularity), which is what :func:`min_cost_flow` returns.

Public names: :func:`min_cost_flow`, :class:`FlowResult`, :data:`INF`.
"""

from dataclasses import dataclass

import numpy as np

from ._status import Status

__all__ = ["INF", "FlowResult", "min_cost_flow"]

#: Capacity marker for an uncapacitated arc: pass ``INF`` (``np.iinfo(np.int64).max``) in an integer capacity array,
#: or ``np.inf`` in a float one.
INF = int(np.iinfo(np.int64).max)

_MAX_TOTAL = 1 << 60  # sum of finite capacities and positive supplies must stay below this (int64 headroom)
_EPS_REL = 1e-12  # reduced costs within -_EPS_REL * max|cost| of 0 count as 0 (float round-off only)


@dataclass(frozen=True, slots=True)
class FlowResult:
    """Result of :func:`min_cost_flow`.

    Attributes
    ----------
    flow : ndarray of int64, shape (m,)
        Flow per arc, in the input order. Feasible when ``status`` is "optimal" or "unbounded" (then it is some
        feasible flow, not an optimum); all zeros when "infeasible".
    cost : float
        :math:`\\sum_a c_a f_a` of the optimum; ``-inf`` when "unbounded", ``nan`` when "infeasible".
    status : Status
        "optimal", "infeasible" (the supplies cannot be routed within the capacities) or "unbounded" (feasible, and
        a cycle of infinite-capacity arcs has negative cost).
    potentials : ndarray of float64, shape (n,), or None
        Optimal node potentials :math:`\\pi` (only when "optimal"): with reduced costs
        :math:`\\bar c_a = c_a - \\pi_{\\mathrm{tail}} + \\pi_{\\mathrm{head}}`, every arc with
        :math:`f_a < u_a` has :math:`\\bar c_a \\ge 0` and every arc with :math:`f_a > 0` has :math:`\\bar c_a \\le 0`
        (up to float round-off): the dual certificate of optimality.
    pivots : int
        Network simplex pivots done.
    """

    flow: np.ndarray
    cost: float
    status: Status
    potentials: np.ndarray | None = None
    pivots: int = 0

    @property
    def objective(self) -> float:
        """Alias of ``cost`` (the name every combax result uses)."""
        return self.cost

    @property
    def success(self) -> bool:
        return self.status == Status.OPTIMAL


def _int_array(name, value, fix):
    a = np.asarray(value)
    if a.ndim != 1:
        raise ValueError(f"`{name}` must be a 1-D array; got shape {a.shape}. {fix}")
    if a.size and not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise ValueError(f"`{name}` must hold integers; got dtype {a.dtype}. {fix}")
    if np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all() or (a != np.round(a)).any():
            raise ValueError(f"`{name}` must hold finite integer values; got non-integer, NaN or inf entries. {fix}")
        if a.size and np.abs(a).max() >= 2.0**62:
            raise ValueError(f"`{name}` entries must be below 2**62 in magnitude. {fix}")
    return a.astype(np.int64)


def _capacity_iv(capacity, m):
    c = np.asarray(capacity)
    if c.ndim != 1 or c.shape[0] != m:
        raise ValueError(f"`capacity` must be a 1-D array of length m = {m} (one per arc); got shape {c.shape}")
    if m == 0:
        return np.zeros(0, np.int64), np.zeros(0, bool)
    if c.dtype == bool or not (np.issubdtype(c.dtype, np.integer) or np.issubdtype(c.dtype, np.floating)):
        raise ValueError(f"`capacity` must hold integers (or np.inf / flow.INF for no limit); got dtype {c.dtype}")
    if np.issubdtype(c.dtype, np.floating):
        if np.isnan(c).any():
            raise ValueError("`capacity` must not contain NaN; use np.inf (or flow.INF) for an uncapacitated arc")
        inf = np.isposinf(c)
        fin = c[~inf]
        if (fin < 0).any() or np.isneginf(fin).any():
            raise ValueError("`capacity` must be >= 0; use np.inf (or flow.INF) for an uncapacitated arc")
        if (fin != np.round(fin)).any():
            raise ValueError("`capacity` must hold integer values (network flows here are integral); round them")
        if fin.size and fin.max() >= 2.0**62:
            raise ValueError("`capacity` is too large: finite entries must stay below 2**60 in total")
        out = np.where(inf, 0, c).astype(np.int64)
    else:
        out = c.astype(np.int64)
        if (out < 0).any():
            raise ValueError("`capacity` must be >= 0; use flow.INF (or np.inf) for an uncapacitated arc")
        inf = out == INF
    out[inf] = 0
    return out, inf


def _iv(tails, heads, capacity, cost, supply):
    b = _int_array("supply", supply, "Pass one integer supply per node (positive = source, negative = demand).")
    n = b.shape[0]
    t = _int_array("tails", tails, "Pass one integer tail node id per arc.")
    h = _int_array("heads", heads, "Pass one integer head node id per arc.")
    m = t.shape[0]
    if h.shape[0] != m:
        raise ValueError(f"`heads` must have the length of `tails` ({m}); got {h.shape[0]}")
    for name, arr in (("tails", t), ("heads", h)):
        if m and (arr.min() < 0 or arr.max() >= n):
            raise ValueError(
                f"`{name}` must hold node ids in 0..n-1 with n = len(supply) = {n}; got values in "
                f"{int(arr.min())}..{int(arr.max())} (give every node a supply entry, 0 for transit nodes)"
            )
    cap, inf = _capacity_iv(capacity, m)
    c = np.asarray(cost)
    if c.ndim != 1 or c.shape[0] != m:
        raise ValueError(f"`cost` must be a 1-D array of length m = {m} (one per arc); got shape {c.shape}")
    if m and not (np.issubdtype(c.dtype, np.integer) or np.issubdtype(c.dtype, np.floating) or c.dtype == bool):
        raise ValueError(f"`cost` must hold real numbers; got dtype {c.dtype}")
    c = np.ascontiguousarray(c, dtype=np.float64)
    if not np.isfinite(c).all():
        raise ValueError(f"`cost` must be finite; got {int((~np.isfinite(c)).sum())} NaN or inf entries")
    total = int(b.sum())
    if total != 0:
        raise ValueError(
            f"`supply` must sum to 0 (total supply = total demand); got sum {total}. Add a node that absorbs the "
            "difference (with arcs to or from it) or fix the supplies"
        )
    pos = int(b[b > 0].sum())
    if pos + float(cap[~inf].astype(np.float64).sum()) >= _MAX_TOTAL:
        raise ValueError("`capacity` and `supply` are too large: their finite total must stay below 2**60")
    return t, h, cap, inf, c, b


def min_cost_flow(tails, heads, capacity, cost, supply):
    r"""Minimum-cost flow by the primal network simplex method.

    Solves

    .. math::

        \min_f \sum_a c_a f_a \quad\text{s.t.}\quad
        \sum_{\mathrm{tail}(a)=v} f_a - \sum_{\mathrm{head}(a)=v} f_a = b_v,\qquad 0 \le f_a \le u_a,

    on the directed multigraph with nodes ``0 .. n-1`` (``n = len(supply)``) and arcs ``tails[a] -> heads[a]``.

    Parameters
    ----------
    tails, heads : array_like of int, shape (m,)
        Arc end points, node ids in ``0 .. n-1``. Parallel arcs are allowed. Self-loops are allowed: one with
        negative cost is filled to capacity (unbounded if its capacity is infinite), otherwise it carries 0.
    capacity : array_like, shape (m,)
        Integer capacities ``>= 0``. Uncapacitated arcs: :data:`INF` (``np.iinfo(np.int64).max``) in an integer
        array, or ``np.inf`` in a float array (whose finite entries must be integral).
    cost : array_like of float, shape (m,)
        Finite real costs per unit of flow, any sign. Used as float64 without rounding or scaling.
    supply : array_like of int, shape (n,)
        Net supply per node (positive = source, negative = demand); must sum to 0.

    Returns
    -------
    FlowResult
        ``flow`` (int64 per arc), ``cost``, ``status`` ("optimal", "infeasible", "unbounded"), ``potentials`` and
        ``pivots``.

    Raises
    ------
    ValueError
        Arrays of the wrong shape or dtype; node ids out of range; negative, NaN or non-integer capacities; NaN or
        infinite costs; non-integer supplies or supplies that do not sum to 0; totals beyond int64 headroom.

    Notes
    -----
    Algorithm: primal network simplex on strongly feasible spanning trees (AMO ch. 11.5), started from an
    artificial root with one artificial arc per node. Infeasibility is decided exactly: costs are lexicographic
    pairs (artificial flow, real cost), so phase 1 minimises the integer artificial flow and phase 2 prices real
    costs only, with no numeric big-M that would swamp float costs. Infinite capacities are replaced by
    :math:`U = \sum_v \max(b_v, 0) + \sum_{u_a<\infty} u_a`, a bound on every basic flow, so the capped problem has
    the same optimum whenever the original one is bounded. Unboundedness is decided separately and exactly: the LP
    is unbounded iff it is feasible and the infinite-capacity arcs contain a negative-cost cycle (the recession
    directions are the nonnegative circulations on those arcs), tested by Bellman-Ford.

    Network simplex rather than successive shortest paths: its running time does not grow with the supplies or the
    capacities (SSP does one Dijkstra per augmentation, pseudo-polynomially many with large capacities), it needs no
    preliminary step for negative costs or negative cycles of finite capacity, and it yields the optimal potentials.
    Pricing is block search over ``sqrt(m)`` arcs, the leaving arc follows Cunningham's rule (no cycling). A
    pivot costs O(cycle length + size of the re-hung subtree) plus the pricing scan.

    Complexity: the number of pivots has no polynomial bound in the worst case (as for every primal simplex), but
    is small in practice; each pivot is O(n + sqrt(m)) at most. The unboundedness test is O(n m_inf) for m_inf
    infinite-capacity arcs. Memory O(n + m).

    Exactness and ties: costs stay float64; reduced costs within ``1e-12 * max|cost|`` of 0 count as 0 (round-off).
    The returned flow is a basic (spanning-tree) optimum, deterministic for equal inputs; among tied optima it is
    the one the arc order and the pricing rule reach first.

    References
    ----------
    R. K. Ahuja, T. L. Magnanti, J. B. Orlin, *Network Flows: Theory, Algorithms, and Applications*, Prentice Hall,
    1993, ch. 11 (network simplex, strongly feasible trees). W. H. Cunningham, "A network simplex method",
    Math. Programming 11 (1976).

    Examples
    --------
    >>> from combax.solvers import flow
    >>> res = flow.min_cost_flow([0, 0, 1], [1, 2, 2], [1, 2, 1], [1.0, 3.0, 1.0], [2, 0, -2])
    >>> res.flow.tolist(), res.cost, str(res.status)
    ([1, 1, 1], 5.0, 'optimal')
    """
    from ._flow_kernels import _negative_cycle_kernel, _network_simplex_kernel

    t, h, cap, inf, c, b = _iv(tails, heads, capacity, cost, supply)
    n, m = b.shape[0], t.shape[0]
    top = float(np.abs(c).max()) if m else 0.0
    eps = _EPS_REL * top

    loop = t == h
    # a cycle of infinite arcs with negative cost (self-loops included) => unbounded if feasible
    unbounded = bool((loop & inf & (c < -eps)).any())
    if not unbounded:
        sel = inf & ~loop
        if sel.any():
            unbounded = bool(_negative_cycle_kernel(n, t[sel], h[sel], c[sel], eps))

    flow = np.zeros(m, np.int64)
    loop_fill = loop & ~inf & (c < 0)
    flow[loop_fill] = cap[loop_fill]
    big = max(int(b[b > 0].sum()) + int(cap[~inf].sum()), 1)
    use = ~loop & (inf | (cap > 0))
    idx = np.flatnonzero(use)
    ucap = np.where(inf[idx], big, cap[idx]).astype(np.int64)
    f, pic, pim, state, st, pivots = _network_simplex_kernel(
        n, np.ascontiguousarray(t[idx]), np.ascontiguousarray(h[idx]), ucap, np.ascontiguousarray(c[idx]), b, eps
    )
    if st == 1:
        return FlowResult(np.zeros(m, np.int64), float("nan"), Status.INFEASIBLE, None, int(pivots))
    flow[idx] = f
    if unbounded:
        return FlowResult(flow, float("-inf"), Status.UNBOUNDED, None, int(pivots))
    objective = float(np.dot(flow.astype(np.float64), c))
    # dual certificate: pi = -(piC + K piM), K large enough that arcs priced out by their M part stay optimal
    rcm = (pim[t[idx]] - pim[h[idx]]).astype(np.float64)
    rcc = c[idx] + pic[t[idx]] - pic[h[idx]]
    s = state.astype(np.float64)
    hard = s * rcm > 0
    k_mult = float(np.max(np.maximum(-s[hard] * rcc[hard], 0.0) / (s[hard] * rcm[hard]))) + 1.0 if hard.any() else 0.0
    pot = -(pic[:n] - pic[n] + k_mult * (pim[:n] - pim[n]))
    return FlowResult(flow, objective, Status.OPTIMAL, pot, int(pivots))
