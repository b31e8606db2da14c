"""combax.solvers.depth: DP == brute force on random instances, in every mode, with and without boundary flags.

600 instances (L = 3..10, random disallowed blocks and segments, integer and float latencies, plain and flagged),
each solved in one of the three modes (exact, ceil, floor) at a random budget. Integer instances use resolution 1,
where every rounding convention agrees with the real latency; float instances use resolution 0.37.
"""

import numpy as np
import pytest

from combax.solvers import Status, depth

N_CHUNKS = 10
PER_CHUNK = 60
MODES = [(None, "ceil"), ("res", "ceil"), ("res", "floor")]


def _instance(seed):
    rng = np.random.default_rng(10_000 + seed)
    L = int(rng.integers(3, 11))
    flagged = bool(rng.integers(2))
    integer = bool(rng.integers(2))
    prob = depth.random_problem(L, seed=seed, flagged=flagged, integer=integer, p_missing=float(rng.uniform(0.1, 0.5)))
    resolution, rounding = MODES[seed % 3]
    if resolution is not None:
        resolution = 1.0 if integer else 0.37
    if np.isfinite(prob.min_latency):
        front = depth.pareto_front(prob)
        lo, hi = 0.9 * prob.min_latency, 1.05 * front.latency[-1]
    else:
        lo, hi = 0.0, 20.0
    budget = float(np.floor(rng.uniform(lo, hi + 1))) if integer else float(rng.uniform(lo, hi))
    return prob, budget, resolution, rounding


@pytest.mark.parametrize("chunk", range(N_CHUNKS))
def test_dp_equals_brute_force(chunk):
    statuses = []
    for seed in range(chunk * PER_CHUNK, (chunk + 1) * PER_CHUNK):
        prob, budget, resolution, rounding = _instance(seed)
        sol = depth.solve(prob, budget, resolution=resolution, rounding=rounding)
        ref = depth.brute_force(prob, budget, resolution=resolution, rounding=rounding)
        where = f"seed={seed} L={prob.n_layers} flagged={prob.flagged} budget={budget} mode={resolution, rounding}"
        assert sol.status == ref.status, where
        statuses.append(sol.status)
        if sol.status != Status.OPTIMAL:
            continue
        assert sol.objective == pytest.approx(ref.objective, abs=1e-9), where
        if resolution is None:
            assert sol.latency == pytest.approx(ref.latency, abs=1e-9), where
            assert sol.latency <= budget, where
        else:
            assert sol.int_latency == ref.int_latency, where
            assert sol.int_latency <= np.floor(budget / resolution), where
            if rounding == "ceil":
                assert sol.latency <= budget + 1e-12, where
        # the reported numbers are those of the returned solution
        objective, latency = depth.evaluate(prob, sol.boundaries, sol.flags)
        assert (objective, latency) == (sol.objective, sol.latency), where
    # the suite exercises both outcomes
    assert statuses.count(Status.OPTIMAL) >= PER_CHUNK // 2


def test_suite_covers_every_kind_of_instance():
    kinds = set()
    for seed in range(N_CHUNKS * PER_CHUNK):
        rng = np.random.default_rng(10_000 + seed)
        L = int(rng.integers(3, 11))
        kinds.add((bool(rng.integers(2)), bool(rng.integers(2)), seed % 3, L))
    assert {(f, i, m) for f, i, m, _ in kinds} == {(f, i, m) for f in (0, 1) for i in (0, 1) for m in range(3)}
    assert {L for *_, L in kinds} == set(range(3, 11))
