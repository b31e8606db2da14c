"""flow.min_cost_flow against networkx (integer costs) and HiGHS (float costs) on random networks, plus input errors."""

import re

import networkx as nx
import numpy as np
import pytest
from scipy.optimize import linprog

from combax.solvers import Status, flow


def random_network(rng, *, inf_prob=0.0, float_costs=False, neg_frac=0.3, tight=False):
    """A random multigraph (parallel arcs, self-loops) with supplies that sum to 0."""
    n = int(rng.integers(1, 13))
    m = int(rng.integers(0, 4 * n + 1))
    tails = rng.integers(0, n, m)
    heads = rng.integers(0, n, m)
    if float_costs:
        cost = rng.normal(0.0, 3.0, m) + np.where(rng.random(m) < neg_frac, -2.0, 2.0)
    else:
        cost = rng.integers(0, 11, m)
        cost = np.where(rng.random(m) < neg_frac, -cost, cost).astype(np.int64)
    cap = rng.integers(0, 11 if not tight else 4, m).astype(np.float64)
    cap[rng.random(m) < inf_prob] = np.inf
    supply = np.zeros(n, np.int64)
    if rng.random() < 0.6:  # the net outflow of a random flow within the capacities: feasible
        x = rng.integers(0, np.where(np.isfinite(cap), cap, 10.0).astype(np.int64) + 1)
        np.add.at(supply, tails, x)
        np.add.at(supply, heads, -x)
        return tails, heads, cap, cost, supply
    for _ in range(int(rng.integers(0, 2 * n + 1))):
        a, b = rng.integers(0, n, 2)
        amount = int(rng.integers(1, 8))
        supply[a] += amount
        supply[b] -= amount
    return tails, heads, cap, cost, supply


def networkx_cost(tails, heads, cap, cost, supply):
    """(status, cost) from networkx.network_simplex on a MultiDiGraph (infinite capacity = no attribute)."""
    g = nx.MultiDiGraph()
    g.add_nodes_from((v, {"demand": -int(s)}) for v, s in enumerate(supply))
    for t, h, u, c in zip(tails, heads, cap, cost):
        attrs = {"weight": int(c)}
        if np.isfinite(u):
            attrs["capacity"] = int(u)
        g.add_edge(int(t), int(h), **attrs)
    try:
        value, _ = nx.network_simplex(g)
    except nx.NetworkXUnfeasible:
        return "infeasible", None
    except nx.NetworkXUnbounded:
        return "unbounded", None
    return "optimal", value


def highs_cost(tails, heads, cap, cost, supply):
    """(status, cost) of the LP relaxation from scipy's HiGHS."""
    n, m = len(supply), len(tails)
    if m == 0:
        return ("optimal", 0.0) if not np.any(supply) else ("infeasible", None)
    a = np.zeros((n, m))
    np.add.at(a, (tails, np.arange(m)), 1.0)
    np.add.at(a, (heads, np.arange(m)), -1.0)
    bounds = [(0, None if not np.isfinite(u) else float(u)) for u in cap]
    res = linprog(cost, A_eq=a, b_eq=supply.astype(float), bounds=bounds, method="highs")
    return {0: "optimal", 2: "infeasible", 3: "unbounded"}[res.status], (res.fun if res.status == 0 else None)


def check_feasible(res, tails, heads, cap, supply):
    f = res.flow
    assert f.dtype == np.int64 and f.shape == tails.shape
    assert (f >= 0).all() and (f <= np.where(np.isfinite(cap), cap, np.iinfo(np.int64).max)).all()
    net = np.zeros(len(supply), np.int64)
    np.add.at(net, tails, f)
    np.add.at(net, heads, -f)
    assert (net == supply).all()


def check_dual(res, tails, heads, cap, cost, tol):
    pi = res.potentials
    rc = cost - pi[tails] + pi[heads]
    below = res.flow < np.where(np.isfinite(cap), cap, np.inf)
    assert (rc[below] >= -tol).all()
    assert (rc[res.flow > 0] <= tol).all()


@pytest.mark.parametrize("mode", ["finite", "infinite", "tight"])
def test_agrees_with_networkx(mode):
    rng = np.random.default_rng({"finite": 0, "infinite": 1, "tight": 2}[mode])
    seen = {"optimal": 0, "infeasible": 0, "unbounded": 0}
    for _ in range(200):
        kw = {"finite": {}, "infinite": {"inf_prob": 0.4, "neg_frac": 0.25}, "tight": {"tight": True}}[mode]
        tails, heads, cap, cost, supply = random_network(rng, **kw)
        if mode == "infinite" and highs_cost(tails, heads, cap, cost, supply)[0] == "infeasible":
            # networkx 3.x can pivot forever on infeasible networks with negative infinite cycles: HiGHS decides
            status, value = "infeasible", None
        else:
            status, value = networkx_cost(tails, heads, cap, cost, supply)
        res = flow.min_cost_flow(tails, heads, cap, cost, supply)
        assert res.status == status, (tails, heads, cap, cost, supply)
        seen[status] += 1
        if status == "optimal":
            assert res.cost == value
            check_feasible(res, tails, heads, cap, supply)
            check_dual(res, tails, heads, cap, cost, 1e-9)
        elif status == "unbounded":
            assert res.cost == -np.inf
            check_feasible(res, tails, heads, cap, supply)
        else:
            assert np.isnan(res.cost)
    assert seen["optimal"] >= 30 and seen["infeasible"] >= 10
    if mode == "infinite":
        assert seen["unbounded"] >= 10


def test_float_costs_agree_with_highs():
    rng = np.random.default_rng(3)
    seen = set()
    for _ in range(120):
        tails, heads, cap, cost, supply = random_network(rng, float_costs=True, inf_prob=0.1, neg_frac=0.2)
        status, value = highs_cost(tails, heads, cap, cost, supply)
        res = flow.min_cost_flow(tails, heads, cap, cost, supply)
        assert res.status == status
        seen.add(status)
        if status == "optimal":
            assert res.cost == pytest.approx(value, rel=1e-9, abs=1e-9)
            check_feasible(res, tails, heads, cap, supply)
            check_dual(res, tails, heads, cap, cost, 1e-9)
    assert seen == {"optimal", "infeasible", "unbounded"}


def test_larger_networks_agree_with_networkx():
    rng = np.random.default_rng(4)
    for n, m in [(60, 400), (120, 1500), (200, 3000)]:
        tails, heads = rng.integers(0, n, m), rng.integers(0, n, m)
        cap = rng.integers(1, 30, m).astype(float)
        cost = rng.integers(-20, 100, m)
        supply = np.zeros(n, np.int64)
        src, dst = rng.choice(n, 10, replace=False), rng.choice(n, 10, replace=False)
        np.add.at(supply, src, 5)
        np.add.at(supply, dst, -5)
        status, value = networkx_cost(tails, heads, cap, cost, supply)
        res = flow.min_cost_flow(tails, heads, cap, cost, supply)
        assert res.status == status
        if status == "optimal":
            assert res.cost == value
            check_feasible(res, tails, heads, cap, supply)


def test_float_costs_are_not_rounded():
    # two parallel routes whose costs differ by 1e-12: the cheaper one must win
    res = flow.min_cost_flow([0, 0], [1, 1], [1, 1], [1.0 + 1e-12, 1.0], [1, -1])
    assert res.flow.tolist() == [0, 1] and res.cost == 1.0


def test_hash_code_network_matches_assign_energy():
    from combax.solvers import _assign_reference as ref
    from combax.solvers import assign

    rng = np.random.default_rng(5)
    s = rng.random((12, 9))
    k, lam = 3, 0.4
    tails, heads, cap, cost, supply, _, first = ref._network(s, k, lam, None, 0, 0.0)
    res = flow.min_cost_flow(tails, heads, cap, cost, supply)
    z = res.flow[first : first + s.size].reshape(s.shape) > 0
    assert (z.sum(axis=1) == k).all()
    e = assign.energy(s, assign.sparse_codes(s, k, lam), lam)
    assert res.cost == pytest.approx(e, rel=1e-12) and assign.energy(s, z, lam) == pytest.approx(e, rel=1e-12)


def test_self_loops_empty_and_infinite_markers():
    # negative finite self-loop is filled; positive one stays empty; negative infinite one is unbounded
    res = flow.min_cost_flow([0, 0, 0], [0, 0, 1], [3, 5, 2], [-2.0, 1.0, 1.0], [1, -1])
    assert res.flow.tolist() == [3, 0, 1] and res.cost == -5.0
    res = flow.min_cost_flow([0], [0], [flow.INF], [-1.0], [0])
    assert res.status == Status.UNBOUNDED and res.status == "unbounded"
    res = flow.min_cost_flow([0, 1], [1, 0], np.array([flow.INF, flow.INF]), [1, -2], [0, 0])
    assert res.status == "unbounded"
    res = flow.min_cost_flow([0, 1], [1, 0], [np.inf, np.inf], [1, -1], [0, 0])  # zero-cost cycle: bounded
    assert res.status == "optimal" and res.cost == 0.0
    res = flow.min_cost_flow([], [], [], [], [0, 0, 0])
    assert res.status == "optimal" and res.flow.shape == (0,) and res.cost == 0.0
    assert flow.min_cost_flow([], [], [], [], [1, -1]).status == "infeasible"
    # infeasible wins over a negative infinite cycle (no feasible flow at all)
    res = flow.min_cost_flow([0, 1], [1, 0], [np.inf, np.inf], [1, -2], [0, 1, -1])
    assert res.status == "infeasible"


def test_result_is_frozen_and_deterministic():
    rng = np.random.default_rng(6)
    a = None
    while a is None or a.status != "optimal" or not a.flow.any():
        tails, heads, cap, cost, supply = random_network(rng)
        a = flow.min_cost_flow(tails, heads, cap, cost, supply)
    b = flow.min_cost_flow(tails, heads, cap, cost, supply)
    assert (a.flow == b.flow).all() and a.cost == b.cost and a.objective == a.cost
    with pytest.raises(AttributeError):
        a.cost = 0.0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (([0], [1, 0], [1], [1.0], [1, -1]), "`heads` must have the length of `tails`"),
        (([0], [2], [1], [1.0], [1, -1]), "`heads` must hold node ids in 0..n-1"),
        (([-1], [1], [1], [1.0], [1, -1]), "`tails` must hold node ids in 0..n-1"),
        (([0], [1], [1, 2], [1.0], [1, -1]), "`capacity` must be a 1-D array of length m = 1"),
        (([0], [1], [-1], [1.0], [1, -1]), "`capacity` must be >= 0"),
        (([0], [1], [1.5], [1.0], [1, -1]), "`capacity` must hold integer values"),
        (([0], [1], [np.nan], [1.0], [1, -1]), "`capacity` must not contain NaN"),
        (([0], [1], [1], [np.nan], [1, -1]), "`cost` must be finite"),
        (([0], [1], [1], [np.inf], [1, -1]), "`cost` must be finite"),
        (([0], [1], [1], [1.0, 2.0], [1, -1]), "`cost` must be a 1-D array of length m = 1"),
        (([0], [1], [1], [1.0], [1, 0]), "`supply` must sum to 0"),
        (([0], [1], [1], [1.0], [0.5, -0.5]), "`supply` must hold finite integer values"),
        (([0.5], [1], [1], [1.0], [1, -1]), "`tails` must hold finite integer values"),
        (([[0]], [[1]], [1], [1.0], [1, -1]), "`tails` must be a 1-D array"),
        (([0], [1], ["a"], [1.0], [1, -1]), "`capacity` must hold integers"),
        (([0], [1], [2**61], [1.0], [1, -1]), "too large"),
        (([0], [1], [1e30], [1.0], [1, -1]), "too large"),
    ],
)
def test_bad_input(args, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        flow.min_cost_flow(*args)
