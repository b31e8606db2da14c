"""combax.solvers.depth: the worked example, the released tables, Pareto fronts, an independent MILP, errors, I/O."""

import re

import numpy as np
import pytest

from combax.data import depth_table_path
from combax.solvers import Status, depth

# ------------------------------------------------------------------------------------------------ worked example
# specs/depth_dp.md §5.2: L = 4, all ten blocks valid, prec = 1.
_BLOCKS = [(0, 1), (1, 2), (2, 3), (3, 4), (0, 2), (1, 3), (2, 4), (0, 3), (1, 4), (0, 4)]
_T = [4, 4, 4, 4, 5, 9, 5, 10, 11, 14]
_I = [1.0, 1.0, 1.0, 1.0, 1.5, 0.5, 1.2, 1.0, 2.8, 0.2]


def worked_example() -> depth.DepthProblem:
    T = np.full((5, 5), np.nan)
    I = np.full((5, 5), np.nan)
    for (i, j), t, v in zip(_BLOCKS, _T, _I):
        T[i, j], I[i, j] = t, v
    return depth.DepthProblem(T, I)


WORKED_TABLE = [  # budget, A, S, objective, latency
    (16, (1, 2, 3), (1, 2, 3), 4.0, 16),
    (15, (1,), (1, 2), 3.8, 13),
    (13, (1,), (1, 2), 3.8, 13),
    (10, (2,), (2,), 2.7, 10),
]


@pytest.mark.parametrize(("budget", "A", "S", "objective", "latency"), WORKED_TABLE)
@pytest.mark.parametrize("mode", [(None, "ceil"), (1.0, "ceil"), (1.0, "floor")])
def test_worked_example_every_budget(budget, A, S, objective, latency, mode):
    prob = worked_example()
    resolution, rounding = mode
    for sol in (
        depth.solve(prob, budget, resolution=resolution, rounding=rounding),
        depth.brute_force(prob, budget, resolution=resolution, rounding=rounding),
    ):
        assert sol.status == Status.OPTIMAL and sol.success
        assert sol.activations == A
        assert sol.cuts == S
        assert sol.objective == pytest.approx(objective, abs=1e-12)
        assert sol.latency == latency
        assert sol.int_latency == (None if resolution is None else latency)


@pytest.mark.parametrize("budget", [9, 5, 0, -1])
@pytest.mark.parametrize("resolution", [None, 1.0])
def test_worked_example_infeasible_reports_min_latency(budget, resolution):
    prob = worked_example()
    for sol in (
        depth.solve(prob, budget, resolution=resolution),
        depth.brute_force(prob, budget, resolution=resolution),
    ):
        assert sol.status == Status.INFEASIBLE and not sol.success
        assert sol.min_latency == 10.0  # T_opt(0, 4)
        assert sol.objective is None and sol.latency is None and sol.activations == () and sol.cuts == ()
        assert "minimum reachable latency is 10" in sol.message


def test_worked_example_stage1():
    s1 = depth.stage1(worked_example().latency)
    for (i, j), t_opt, cut in [((0, 3), 9, 2), ((0, 4), 10, 2), ((1, 3), 8, 2), ((1, 4), 9, 2)]:
        assert s1.time[i, j] == t_opt
        assert s1.breaks(i, j) == (i, cut, j)
    for (i, j), t in zip(_BLOCKS, _T):
        if (i, j) not in [(0, 3), (0, 4), (1, 3), (1, 4)]:
            assert s1.time[i, j] == t


def test_worked_example_pareto_front():
    front = depth.pareto_front(worked_example())
    assert len(front) == 3
    np.testing.assert_array_equal(front.latency, [10, 13, 16])
    np.testing.assert_allclose(front.objective, [2.7, 3.8, 4.0], rtol=0, atol=1e-12)
    assert [p.activations for p in front] == [(2,), (1,), (1, 2, 3)]
    assert front[1].cuts == (1, 2)  # S != A: the activation at 2 is removed but the convs are not merged


# ------------------------------------------------------------------------------------------------ released tables
NETWORKS = ["mbv2_1.0", "mbv2_1.4", "vgg19"]


@pytest.mark.parametrize("network", NETWORKS)
@pytest.mark.parametrize("method", ["general", "original"])
def test_stage1_reproduces_released_opt_time_tables(network, method):
    T = depth.read_csv_table(depth_table_path(network, "time"))
    released, breaks = depth.read_opt_time_csv(depth_table_path(network, "opt_time"))
    s1 = depth.stage1(T, method=method)
    allowed = ~np.isnan(T)
    assert allowed.sum() == len(breaks) == {"vgg19": 36}.get(network, 171)
    np.testing.assert_allclose(s1.time[allowed], released[allowed], rtol=0, atol=1e-12)
    mismatched = {k: (s1.breaks(*k), v) for k, v in breaks.items() if s1.breaks(*k) != v}
    assert not mismatched


def test_stage1_general_is_never_worse_than_original_and_finds_invalid_prefix_partitions():
    T = depth.read_csv_table(depth_table_path("mbv2_1.0"))
    general = depth.stage1(T).time
    original = depth.stage1(T, method="original").time
    allowed = ~np.isnan(original)
    assert np.all(general[allowed] <= original[allowed] + 1e-12)
    # (20, 26] has a partition only through pieces whose prefixes cross residual (23, 26): the general form finds
    # it even where (20, 26] is not a single allowed block.
    toy = np.full((4, 4), np.nan)
    toy[0, 1], toy[1, 3], toy[2, 3] = 1.0, 5.0, 1.0
    toy[1, 2] = 1.0
    s = depth.stage1(toy)
    assert s.time[0, 3] == 3.0 and s.breaks(0, 3) == (0, 1, 2, 3)
    assert np.isnan(depth.stage1(toy, method="original").time[0, 3])


@pytest.mark.parametrize(
    ("network", "singles", "min_latency"),
    [("mbv2_1.0", 33.67, 6.47), ("mbv2_1.4", 43.20, 10.28), ("vgg19", 193.1, None)],
)
def test_structure_of_released_tables(network, singles, min_latency):
    T = depth.read_csv_table(depth_table_path(network))
    structure = depth.vgg19_structure() if network == "vgg19" else depth.mbv2_structure()
    assert T.shape == (structure.n_layers + 1,) * 2
    np.testing.assert_array_equal(structure.valid_blocks(), ~np.isnan(T))
    assert np.nansum(np.diag(T, 1)) == pytest.approx(singles, abs=0.05)  # spec: two or one decimals
    if min_latency is not None:
        assert depth.optimal_time(T)[0, structure.n_layers] == pytest.approx(min_latency, abs=0.01)
    if network.startswith("mbv2"):
        longest = max(j - i for i, j in np.argwhere(~np.isnan(T)))
        assert longest == 21


def test_mbv2_flag_sets():
    s = depth.mbv2_structure()
    V = s.valid_blocks()
    assert len(s.optional) == 17 and s.optional[-1] == 50
    assert depth.allowed_flags(V, s.optional, exclude_zeros=False).sum() == 405
    E = depth.allowed_flags(V, s.optional)
    assert E.sum() == 315  # spec §5.3
    opt = set(s.optional)
    for i, j in np.argwhere(V):
        got = {(x, y) for x in (0, 1) for y in (0, 1) if E[i, j, x, y]}
        if i == 0:
            want = {(1, 1)}
        elif i in opt:
            want = {(1, 1), (0, 1)}
        elif j in opt:
            want = {(1, 1), (1, 0)}
        else:
            want = {(1, 1)}
        assert got == want, (i, j)


def mbv2_problem(width="1.4", seed=0):
    s = depth.mbv2_structure()
    T = depth.read_csv_table(depth_table_path(f"mbv2_{width}"))
    return depth.DepthProblem(T, depth.synthetic_importance(s.valid_blocks(), s.optional, seed=seed), s.optional)


def test_mbv2_extended_importance_chains_have_at_most_two_pieces():
    prob = mbv2_problem()
    h, iext = prob.importance, depth.extended_importance(prob)
    np.testing.assert_array_equal(np.isnan(h), np.isnan(iext))
    # independent check of the paper's recurrence: I_ext = max(h, max_k h[i,k,x,0] + h[k,j,0,y])
    for i, j, x, y in np.argwhere(~np.isnan(h)):
        best = h[i, j, x, y]
        for k in range(i + 1, j):
            if not np.isnan(h[i, k, x, 0]) and not np.isnan(h[k, j, 0, y]):
                best = max(best, h[i, k, x, 0] + h[k, j, 0, y])
        assert iext[i, j, x, y] == best


@pytest.mark.parametrize("width", ["1.0", "1.4"])
def test_mbv2_modes_are_ordered_and_ceil_never_exceeds_budget(width):
    prob = mbv2_problem(width)
    front = depth.pareto_front(prob)
    for budget in [18.0, 20.0, 22.1, 23.0, 25.0, 26.0, 27.0]:
        exact = depth.solve(prob, budget)
        ceil = depth.solve(prob, budget, resolution=0.05)
        floor = depth.solve(prob, budget, resolution=0.05, rounding="floor")
        assert exact.latency <= budget and ceil.latency <= budget
        assert ceil.int_latency <= round(budget / 0.05)
        # ceil-feasible => feasible => floor-feasible, so the optima are ordered
        assert ceil.objective <= exact.objective + 1e-12 <= floor.objective + 2e-12
        assert floor.latency <= budget + len(floor.boundaries) * 0.05
        k = front.best_index(budget)
        assert exact.objective == front.objective[k] and exact.latency == front.latency[k]
        for sol in (exact, ceil, floor):
            assert set(sol.activations) - {50} <= set(sol.cuts)
            assert set(sol.boundaries) - {50} <= set(sol.cuts)


@pytest.mark.parametrize("budget", [20.0, 23.0, 26.0, 27.0])
def test_mbv2_exact_solve_matches_independent_milp(budget):
    prob = mbv2_problem("1.4", seed=3)
    sol = depth.solve(prob, budget)
    assert sol.objective == pytest.approx(depth.milp_reference(prob, budget), abs=1e-6)


def test_milp_reference_agrees_on_infeasibility():
    prob = mbv2_problem("1.0", seed=1)
    assert depth.milp_reference(prob, prob.min_latency - 0.01) is None
    assert depth.solve(prob, prob.min_latency - 0.01).status == Status.INFEASIBLE


# ------------------------------------------------------------------------------------------------ Pareto fronts
@pytest.mark.parametrize("seed", range(30))
def test_pareto_front_properties(seed):
    rng = np.random.default_rng(seed)
    prob = depth.random_problem(int(rng.integers(3, 14)), seed=seed, flagged=seed % 2 == 1, p_missing=0.2)
    front = depth.pareto_front(prob)
    if not np.isfinite(prob.min_latency):
        assert len(front) == 0
        return
    assert len(front) >= 1 and front.latency[0] == prob.min_latency
    assert np.all(np.diff(front.latency) > 0) and np.all(np.diff(front.objective) > 0)  # sorted, none dominates
    for p in front:
        # achievable: re-evaluate from the raw latency table along the cuts, and from the extended importance
        s = (0, *p.cuts, prob.n_layers)
        raw_latency = sum(prob.latency[a, b] for a, b in zip(s[:-1], s[1:]))
        assert raw_latency == pytest.approx(p.latency, abs=1e-9)
        assert set(p.activations) - {prob.n_layers} <= set(p.cuts)
        objective, latency = depth.evaluate(prob, p.boundaries, p.flags)
        assert objective == p.objective and latency == p.latency
    for budget in rng.uniform(0.8 * front.latency[0], 1.2 * front.latency[-1], size=5):
        sol = depth.solve(prob, budget)
        k = front.best_index(budget)
        if k < 0:
            assert sol.status == Status.INFEASIBLE
        else:
            assert (sol.objective, sol.latency) == (front.objective[k], front.latency[k])


def test_plain_problem_objective_from_raw_importance():
    prob = depth.random_problem(9, seed=5, p_missing=0.1)
    for p in depth.pareto_front(prob):
        a = (0, *p.activations, prob.n_layers)
        assert sum(prob.importance[x, y] for x, y in zip(a[:-1], a[1:])) == pytest.approx(p.objective, abs=1e-12)


# ------------------------------------------------------------------------------------------------ errors
def _ok_tables(n=4):
    T = np.triu(np.ones((n, n)), 1)
    T[T == 0] = np.nan
    return T, T.copy()


def _raises(msg, fn, *args, **kw):
    with pytest.raises(ValueError, match=re.escape(msg)):
        fn(*args, **kw)


def test_error_latency_not_square():
    _raises(
        "`latency` must be a square array of shape (L+1, L+1); got shape (3, 4)",
        depth.DepthProblem,
        np.ones((3, 4)),
        np.ones((3, 4)),
    )


def test_error_latency_too_small():
    _raises("`latency` must describe at least one conv", depth.DepthProblem, np.ones((1, 1)), np.ones((1, 1)))


def test_error_importance_shape_mismatch():
    T, _ = _ok_tables(4)
    _raises("`importance` must have shape (4, 4) or (4, 4, 2, 2) (with boundary flags) to match `latency`; got shape (5, 5)",
            depth.DepthProblem, T, np.ones((5, 5)))  # fmt: skip


def test_error_negative_latency():
    T, I = _ok_tables()
    T[1, 3] = -2.0
    _raises("`latency` must be non-negative where allowed; got -2.0 at block (1, 3]", depth.DepthProblem, T, I)


def test_error_infinite_latency():
    T, I = _ok_tables()
    T[0, 2] = np.inf
    _raises("`latency` must be finite or NaN (not allowed); got inf at block (0, 2]", depth.DepthProblem, T, I)


def test_error_infinite_importance():
    T, I = _ok_tables()
    I[0, 1] = -np.inf
    _raises("`importance` must be finite or NaN (not allowed); got -inf at (0, 1)", depth.DepthProblem, T, I)


def test_error_optional_without_flag_axes():
    T, I = _ok_tables()
    _raises("`optional` needs boundary flags: `importance` must have shape (4, 4, 2, 2) when `optional` is given; "
            "got shape (4, 4)", depth.DepthProblem, T, I, optional=(2,))  # fmt: skip


@pytest.mark.parametrize("bad", [0, 4, -1])
def test_error_optional_out_of_range(bad):
    T, _ = _ok_tables()
    _raises(
        f"`optional` positions must lie in 1..L = 1..3; got [{bad}]",
        depth.DepthProblem,
        T,
        np.zeros((4, 4, 2, 2)),
        optional=(bad,),
    )


def test_error_optional_not_integers():
    T, _ = _ok_tables()
    _raises(
        "`optional` must be a sequence of integer positions",
        depth.DepthProblem,
        T,
        np.zeros((4, 4, 2, 2)),
        optional=(1.5,),
    )
    _raises(
        "`optional` must be a sequence of integer positions",
        depth.DepthProblem,
        T,
        np.zeros((4, 4, 2, 2)),
        optional=("a",),
    )


@pytest.mark.parametrize("fn", [depth.solve, depth.brute_force])
@pytest.mark.parametrize("budget", [np.inf, np.nan, "x"])
def test_error_budget_not_finite(fn, budget):
    _raises("`budget` must be a finite number; got", fn, worked_example(), budget)


@pytest.mark.parametrize("resolution", [0, -0.1, np.inf, "x"])
def test_error_resolution(resolution):
    _raises(
        "`resolution` must be a positive finite number or None; got",
        depth.solve,
        worked_example(),
        10,
        resolution=resolution,
    )


def test_error_rounding():
    _raises(
        "`rounding` must be 'ceil' or 'floor'; got 'round'",
        depth.solve,
        worked_example(),
        10,
        resolution=1,
        rounding="round",
    )


def test_error_too_many_steps():
    _raises(
        "`budget / resolution` must be at most 10000000 steps; got 100000000",
        depth.solve,
        worked_example(),
        100,
        resolution=1e-6,
    )


def test_error_brute_force_too_large():
    T, I = _ok_tables(14)
    _raises("`problem` is too large for `brute_force`: it enumerates 3^(L-1) pairs and supports L <= 12; got L = 13",
            depth.brute_force, depth.DepthProblem(T, I), 10)  # fmt: skip


def test_error_stage1_method():
    _raises("`method` must be 'general' or 'original'; got 'fast'", depth.stage1, np.ones((3, 3)), method="fast")


def test_error_breaks_without_partition():
    s1 = depth.stage1(np.full((3, 3), np.nan))
    _raises("`(i, j)` must be a segment with a partition; got (0, 2)", s1.breaks, 0, 2)


def test_error_evaluate_must_end_at_L():
    _raises("`boundaries` must end at L = 4; got (1, 2)", depth.evaluate, worked_example(), (1, 2))


def test_error_csv_missing_columns(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("a,b\n1,2\n")
    _raises("must have columns ['st', 'end', 'time']", depth.read_csv_table, p)


def test_error_csv_bad_rows(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("id,st,end,time,stdev\n0,2,1,1.0,0\n")
    _raises("every row needs 0 <= st < end <= L = 1", depth.read_csv_table, p)


def test_error_npz_missing_keys(tmp_path):
    p = tmp_path / "p.npz"
    np.savez(p, latency=np.ones((2, 2)))
    _raises("must hold arrays 'latency' and 'importance'; missing ['importance']", depth.load_npz, p)


# ------------------------------------------------------------------------------------------------ edge cases, I/O
def test_single_conv_chain():
    prob = depth.DepthProblem([[np.nan, 2.0], [np.nan, np.nan]], [[np.nan, 0.5], [np.nan, np.nan]])
    sol = depth.solve(prob, 2.0)
    assert sol.status == "optimal" and sol.activations == () and sol.cuts == () and sol.latency == 2.0
    assert depth.solve(prob, 1.9).status == "infeasible"


def test_problem_without_any_solution():
    T = np.full((4, 4), np.nan)
    T[0, 1] = 1.0
    prob = depth.DepthProblem(T, np.ones((4, 4)))
    assert prob.min_latency == np.inf and len(depth.pareto_front(prob)) == 0
    sol = depth.solve(prob, 100)
    assert sol.status == "infeasible" and "no feasible solution at any budget" in sol.message


def test_lower_triangle_is_ignored_and_inputs_are_copied():
    T, I = _ok_tables()
    T2 = T.copy()
    T2[2, 1] = -5.0  # below the diagonal: ignored
    prob = depth.DepthProblem(T2, I)
    T2[0, 1] = 99.0
    assert prob.latency[0, 1] == 1.0 and np.isnan(prob.latency[2, 1])
    assert not prob.latency.flags.writeable


def test_flagged_zero_flags_only_at_optional_positions():
    prob = depth.random_problem(6, seed=3, flagged=True, p_missing=0.0)
    for p in depth.pareto_front(prob):
        assert all(f == 1 or b in prob.optional for b, f in zip(p.boundaries, p.flags))


def test_csv_and_npz_roundtrip(tmp_path):
    prob = mbv2_problem()
    depth.write_importance_csv(tmp_path / "imp.csv", prob.importance)
    back = depth.read_importance(tmp_path / "imp.csv", prob.n_layers + 1)
    np.testing.assert_array_equal(back, prob.importance)
    depth.save_npz(tmp_path / "p.npz", prob)
    again = depth.load_npz(tmp_path / "p.npz")
    np.testing.assert_array_equal(again.latency, prob.latency)
    np.testing.assert_array_equal(again.importance, prob.importance)
    assert again.optional == prob.optional
    np.save(tmp_path / "imp.npy", prob.importance)
    np.testing.assert_array_equal(depth.read_importance(tmp_path / "imp.npy", 51), prob.importance)
    plain = depth.random_problem(5, seed=0)
    depth.write_importance_csv(tmp_path / "plain.csv", plain.importance)
    np.testing.assert_array_equal(depth.read_importance(tmp_path / "plain.csv", 6), plain.importance)
