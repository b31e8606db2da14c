"""combax.solvers.depth: hypothesis properties (monotone in the budget, invariant under scaling)."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from combax.solvers import depth

SETTINGS = settings(max_examples=60, deadline=None)

problems = st.builds(
    lambda L, seed, flagged, integer: depth.random_problem(L, seed=seed, flagged=flagged, integer=integer),
    L=st.integers(2, 14),
    seed=st.integers(0, 10_000),
    flagged=st.booleans(),
    integer=st.booleans(),
)
modes = st.sampled_from([(None, "ceil"), (0.25, "ceil"), (0.25, "floor")])


def _objective(sol):
    return -np.inf if sol.objective is None else sol.objective


@SETTINGS
@given(prob=problems, lo=st.floats(0, 60), extra=st.floats(0, 30), mode=modes)
def test_raising_the_budget_never_lowers_the_objective(prob, lo, extra, mode):
    resolution, rounding = mode
    a = depth.solve(prob, lo, resolution=resolution, rounding=rounding)
    b = depth.solve(prob, lo + extra, resolution=resolution, rounding=rounding)
    assert _objective(b) >= _objective(a)
    if a.success:
        assert b.success


@SETTINGS
@given(prob=problems, budget=st.floats(0, 60), scale=st.sampled_from([0.125, 0.5, 2.0, 4.0, 1024.0]), mode=modes)
def test_scaling_latencies_and_budget_leaves_the_solution_unchanged(prob, budget, scale, mode):
    # powers of two scale floats exactly, so the comparison can be exact
    resolution, rounding = mode
    scaled = depth.DepthProblem(prob.latency * scale, prob.importance, prob.optional)
    a = depth.solve(prob, budget, resolution=resolution, rounding=rounding)
    b = depth.solve(
        scaled, budget * scale, resolution=None if resolution is None else resolution * scale, rounding=rounding
    )
    assert a.status == b.status
    assert (a.activations, a.cuts, a.boundaries, a.flags) == (b.activations, b.cuts, b.boundaries, b.flags)
    assert a.objective == b.objective and a.int_latency == b.int_latency
    if a.success:
        assert b.latency == a.latency * scale


@SETTINGS
@given(prob=problems, budget=st.floats(0, 60))
def test_exact_solution_is_feasible_and_matches_the_front(prob, budget):
    sol = depth.solve(prob, budget)
    front = depth.pareto_front(prob)
    k = front.best_index(budget)
    assert sol.success == (k >= 0)
    if sol.success:
        assert sol.latency <= budget
        assert (sol.objective, sol.latency) == (front.objective[k], front.latency[k])
        assert sol.activations == front[k].activations and sol.cuts == front[k].cuts
