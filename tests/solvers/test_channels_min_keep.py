"""A per-map lower bound on kept channels, ``ChannelProblem(min_keep=...)``: |u_t| >= min_keep[t] for every map t >= 1.

Oracles: brute force (every method's objective on random instances with random minima), the plain enumeration of
``test_channels`` through ``ChannelProblem.evaluate`` (the smallest valid network's resource), and the independent
checker ``check_solution`` of ``test_channels`` plus the per-map counts on every returned selection.
"""

import dataclasses
import json

import numpy as np
import pytest

from combax.solvers import channels
from combax.solvers._channels_greedy import greedy_state, minimal_state, resource_of
from combax.solvers._channels_layout import flat
from combax.solvers._channels_local import _local_search_kernel
from combax.solvers._channels_prefix import improve_by_prefix_dp, is_valid
from combax.solvers.channels import ChannelProblem
from tests.solvers.test_channels import EXACT, check_solution, close, enumerate_optimum, make, random_instance


def random_min_keep(rng, prob):
    """Random minima: an int for every map (a fifth of the time) or one per map, each in [1, C_t]."""
    w = prob._c["widths"]
    if rng.random() < 0.2:
        return int(rng.integers(1, w[1:].min() + 1))
    return [0] + [int(rng.integers(1, w[t] + 1)) for t in range(1, w.size)]  # entry 0 (the input) is ignored


def instance(seed, integer=True, max_bits=16):
    """A random tiny instance of ``test_channels.random_instance`` with random ``min_keep`` and a budget between the
    new minimum resource and the full network (the minimum itself now and then)."""
    rng = np.random.default_rng(seed)
    prob, spec = random_instance(rng, integer, max_bits)
    prob = dataclasses.replace(prob, min_keep=random_min_keep(rng, prob))
    lo, hi = prob.min_resource, prob.full_resource
    budget = lo if rng.random() < 0.1 else lo + rng.uniform(0.02, 0.98) * (hi - lo)
    if integer:
        budget = float(np.floor(budget)) if np.floor(budget) >= lo else float(np.ceil(budget))
    return prob.with_budget(budget), spec


def check_counts(prob, sol):
    """Every conv keeps at least its map's minimum (rounded up to whole groups), and so does every map's v."""
    c = prob._c
    need = prob.min_counts
    for k in range(prob.n_maps):
        t = k + 1
        assert sol.keep_out[c["order"][k]].sum() >= need[t] >= c["kmin"][t], (t, sol.keep_out[c["order"][k]], need)
        assert sol.keep[t].sum() >= need[t]


# ------------------------------------------------------------------------------------------------ every method
@pytest.mark.parametrize("seed", range(120))
def test_random_instances_every_method_equals_brute_force(seed):
    prob, spec = instance(5000 + seed)
    bf = channels.brute_force(prob)
    assert bf.status == "optimal", bf.message
    check_solution(prob, bf, spec)
    check_counts(prob, bf)
    for method in EXACT:
        sol = channels.solve(prob, method)
        assert sol.status == "optimal", (method, sol.message)
        assert close(sol.objective, bf.objective), (method, sol.objective, bf.objective)
        check_solution(prob, sol, spec)
        check_counts(prob, sol)
    g = channels.solve(prob, "greedy")
    check_solution(prob, g, spec)
    check_counts(prob, g)
    assert g.objective <= bf.objective + 1e-9 * max(1.0, bf.objective)


@pytest.mark.parametrize("seed", range(20))
def test_random_float_instances_bnb_and_highs_equal_brute_force(seed):
    prob, spec = instance(6000 + seed, integer=False)
    bf = channels.brute_force(prob)
    for method in ("bnb", "highs"):
        sol = channels.solve(prob, method)
        assert sol.status == "optimal" and close(sol.objective, bf.objective), (method, sol.objective, bf.objective)
        check_solution(prob, sol, spec)
        check_counts(prob, sol)


def test_the_random_instances_bind_the_minimum():
    # the minima are not decoration: on many instances the optimum without them keeps fewer channels somewhere
    binding = 0
    for seed in range(40):
        prob, _ = instance(5000 + seed)
        free = channels.brute_force(dataclasses.replace(prob, min_keep=None))
        c = prob._c
        counts = np.array([0] + [free.keep_out[c["order"][k]].sum() for k in range(prob.n_maps)])
        binding += bool(np.any(counts[1:] < prob.min_counts[1:]))
    assert binding >= 8


@pytest.mark.parametrize("seed", range(8))
def test_bnb_bound_is_at_least_the_optimum_at_every_node_limit(seed):
    prob, spec = instance(7000 + seed, integer=False)
    bf = channels.brute_force(prob)
    for limit in (1, 2, 5, 20):
        sol = channels.solve(prob, "bnb", node_limit=limit)
        check_solution(prob, sol, spec)
        check_counts(prob, sol)
        assert sol.bound >= bf.objective - 1e-9 * max(1.0, bf.objective), (limit, sol.bound, bf.objective)


@pytest.mark.parametrize("seed", range(12))
def test_heuristics_keep_the_minimum(seed):
    # greedy, minimal state, local search and the prefix-ranking count DP on the grouped problem's kernels
    prob, _ = instance(8000 + seed, integer=False)
    g = prob._grouped()
    f = flat(g._c)
    budget = float(g.budget)
    U, V = minimal_state(f)
    assert is_valid(f, U, V) and close(resource_of(f, U, V), prob.min_resource, 1e-12)
    U, V, _ = greedy_state(f, budget)
    assert is_valid(f, U, V) and resource_of(f, U, V) <= budget
    _local_search_kernel(f.widths, f.src, f.imp, f.off, f.cost, f.lin, f.res_src, f.res_kind, budget, U, V, 1000, 64,
                         f.kmin)  # fmt: skip
    assert is_valid(f, U, V) and resource_of(f, U, V) <= budget
    U2, V2, _ = improve_by_prefix_dp(f, budget, U, V)
    assert is_valid(f, U2, V2) and resource_of(f, U2, V2) <= budget
    for X in (U, U2):
        assert np.all(X[1:].sum(1) >= f.kmin[1:])
    below = U.copy()  # is_valid itself rejects a map below its minimum
    t = int(np.argmax(f.kmin[1:] > 1)) + 1
    if f.kmin[t] > 1:
        below[t] = 0
        below[t, 0] = 1
        assert not is_valid(f, below, below)


# ------------------------------------------------------------------------------------------------ the minimum
LIN = np.array([[1.0, 2.0, -1.0], [0.0, 1.0, 3.0], [2.0, 0.0, 0.0]])


def _tiny(group=None, min_keep=None, kind="identity", widths=(2, 4, 4, 4), seed=11):
    """A chain of three 1x1 convs with a residual 1 -> 3, integer data, linear cost terms (LIN); the default maps
    [2, 4, 4, 4] have 16 channel bits, [1, 2, 4, 2] 10 (plain enumeration)."""
    rng = np.random.default_rng(seed)
    widths = list(widths)
    convs = [(k, k + 1, rng.integers(0, 10, size=(widths[k + 1], widths[k])).astype(float)) for k in range(3)]
    prob, spec = make(widths, convs, [1.0, 2.0, 1.0], 0.0, [(1, 3, kind)], LIN, group)
    return dataclasses.replace(prob, min_keep=min_keep), spec


@pytest.mark.parametrize(
    ("group", "min_keep"), [(None, None), (None, 2), (None, [0, 1, 3, 2]), (2, None), (2, 2), (2, [0, 1, 3, 1])]
)
@pytest.mark.parametrize("kind", ["identity", "projection"])
def test_min_resource_is_the_smallest_resource_of_a_valid_selection(group, min_keep, kind):
    prob, _ = _tiny(group, min_keep, kind, widths=(1, 2, 4, 2), seed=12)
    lin = LIN
    lo = prob.min_resource
    # a valid selection at exactly the minimum, none below it (integer data: resources are integers)
    assert enumerate_optimum(prob.with_budget(lo)) > -np.inf
    assert enumerate_optimum(prob.with_budget(lo - 0.5)) == -np.inf
    g = 1 if group is None else group
    k = np.broadcast_to(np.asarray(1 if min_keep is None else min_keep), (4,))
    n = [1] + [g * -(-int(k[t]) // g) for t in (1, 2, 3)]
    assert list(prob.min_counts) == n
    assert lo == sum(c * n[t + 1] * n[t] + lin[t] @ [n[t], n[t + 1], 1] for t, c in enumerate([1.0, 2.0, 1.0]))


@pytest.mark.parametrize("method", EXACT + ("greedy",))
def test_budget_between_the_old_and_the_new_minimum_is_infeasible(method):
    prob, _ = _tiny(min_keep=3)
    old = dataclasses.replace(prob, min_keep=None).min_resource
    assert old < prob.min_resource
    p = prob.with_budget(0.5 * (old + prob.min_resource))
    assert channels.solve(dataclasses.replace(p, min_keep=None), method).success  # feasible without the minimum
    sol = channels.solve(p, method)
    assert sol.status == "infeasible" and sol.keep is None
    assert sol.min_resource == prob.min_resource and f"{prob.min_resource:g}" in sol.message
    assert channels.brute_force(p).status == "infeasible"


def test_budget_at_the_new_minimum_keeps_exactly_the_minimum():
    prob, spec = _tiny(min_keep=[0, 2, 3, 1])
    p = prob.with_budget(prob.min_resource)
    bf = channels.brute_force(p)
    for method in EXACT:
        sol = channels.solve(p, method)
        check_solution(p, sol, spec)
        assert close(sol.objective, bf.objective)
        assert [int(u.sum()) for u in sol.keep_out] == [2, 3, 1]


def test_groups_round_the_minimum_up_to_whole_groups():
    prob, spec = _tiny(group=2, min_keep=3)
    assert list(prob.min_counts) == [2, 4, 4, 4] and list(prob._grouped()._c["kmin"][1:]) == [2, 2, 2]
    assert prob.min_resource == prob.full_resource  # nothing left to prune
    prob, spec = _tiny(group=2, min_keep=[0, 1, 3, 1])
    p = prob.with_budget(prob.min_resource + 0.3 * (prob.full_resource - prob.min_resource))
    bf = channels.brute_force(p)
    for method in EXACT + ("greedy",):
        sol = channels.solve(p, method)
        check_solution(p, sol, spec)
        check_counts(p, sol)
        assert sol.keep_out[1].sum() == 4  # 3 channels in groups of 2: two groups
        if method != "greedy":
            assert close(sol.objective, bf.objective)


def test_evaluate_flags_a_selection_below_the_minimum():
    prob, _ = _tiny(min_keep=[0, 2, 3, 1])
    prob = prob.with_budget(1e9)
    keep_out = [np.array([1, 1, 0, 0], bool), np.array([1, 1, 0, 0], bool), np.array([1, 0, 0, 0], bool)]
    keep = [np.ones(2, bool), keep_out[0], keep_out[1], keep_out[2] | keep_out[0]]
    ev = prob.evaluate(keep_out, keep)
    assert not ev.feasible
    assert ev.violations == ("conv producing map 2 keeps 2 output channels, fewer than `min_keep` 3",)
    assert dataclasses.replace(prob, min_keep=None).evaluate(keep_out, keep).feasible
    keep_out[1][2] = keep[2][2] = True
    assert prob.evaluate(keep_out, keep).feasible


def test_validation_names_min_keep():
    w = [2, 3, 4]
    convs = [(0, 1, np.ones((3, 2))), (1, 2, np.ones((4, 3)))]
    make_ = lambda mk: ChannelProblem(w, convs, [1.0, 1.0], 10.0, min_keep=mk)  # noqa: E731
    for bad, what in [
        (2.5, "integers"),
        ([0, 1, 1.5], "integers"),
        ("2", "integers"),
        (0, r"map 1 must be in \[1, 3\]"),
        (-1, r"map 1 must be in \[1, 3\]"),
        ([0, 1, 0], r"map 2 must be in \[1, 4\]"),
        (4, r"map 1 must be in \[1, 3\]"),
        ([0, 3, 5], r"map 2 must be in \[1, 4\]"),
        ([1, 2], r"M \+ 1 = 3 ints"),
        ([[1, 2, 3]], r"M \+ 1 = 3 ints"),
    ]:
        with pytest.raises(ValueError, match=r"`min_keep`.*" + what):
            make_(bad)
    # entry 0 (the input) is ignored; an int applies to every map; whole floats pass like `widths`
    assert list(make_([99, 3, 4])._c["kmin"]) == [2, 3, 4]
    assert list(make_(3)._c["kmin"]) == [2, 3, 3]
    assert list(make_(np.array([0, 2.0, 1.0]))._c["kmin"]) == [2, 2, 1]
    assert list(make_(None)._c["kmin"]) == [2, 1, 1]


def test_with_budget_and_grouping_keep_the_minimum():
    prob, _ = _tiny(group=2, min_keep=[0, 1, 3, 2])
    p = prob.with_budget(123.0)
    assert p.budget == 123.0 and p.min_keep == prob.min_keep and np.array_equal(p._c["kmin"], prob._c["kmin"])
    assert list(p._grouped()._c["kmin"]) == [2, 1, 2, 1]


def test_save_load_round_trip_keeps_min_keep(tmp_path):
    prob, _ = _tiny(group=2, min_keep=[0, 1, 3, 2])
    prob = prob.with_budget(prob.min_resource + 10)
    prob.save(tmp_path / "p.npz")
    back = channels.load_problem(tmp_path / "p.npz")
    assert np.array_equal(back._c["kmin"], prob._c["kmin"]) and back.min_resource == prob.min_resource
    assert channels.brute_force(back).objective == channels.brute_force(prob).objective
    # files written before min_keep existed still load, with one channel per map
    with np.load(tmp_path / "p.npz") as z:
        arrays = {k: z[k] for k in z.files if k != "min_keep"}
    np.savez(tmp_path / "old.npz", **arrays)
    old = channels.load_problem(tmp_path / "old.npz")
    assert list(old._c["kmin"]) == [2, 1, 1, 1] and old.min_resource < prob.min_resource


def test_solve_4d_passes_min_keep_to_its_channel_stage():
    rng = np.random.default_rng(3)
    widths = [2, 4, 4]
    convs4 = [(0, 1, rng.random((4, 2, 9))), (1, 2, rng.random((4, 4, 9)))]
    tap_cost = [1.0, 1.0]
    full = sum(tap_cost[k] * a.size for k, (_, _, a) in enumerate(convs4))
    r = channels.solve_4d(widths, convs4, tap_cost, 0.4 * full, min_keep=3, gamma=0.6)
    assert r.status == "optimal" and r.taps is not None
    assert all(u.sum() >= 3 for u in r.channels.keep_out)
    free = channels.solve_4d(widths, convs4, tap_cost, 0.4 * full, gamma=0.6)
    assert any(u.sum() < 3 for u in free.channels.keep_out)  # the minimum binds here


def test_cli_min_keep_overrides_the_file(tmp_path, capsys):
    from combax.cli import main

    prob, _ = _tiny()
    lo = dataclasses.replace(prob, min_keep=3).min_resource
    prob = prob.with_budget(lo + 0.4 * (prob.full_resource - lo))
    prob.save(tmp_path / "p.npz")
    rc = main(["channels", "solve", str(tmp_path / "p.npz"), "--min-keep", "3", "--json"])
    out = json.loads(capsys.readouterr().out)
    ref = channels.brute_force(dataclasses.replace(prob, min_keep=3))
    assert rc == 0 and out["status"] == "optimal" and out["min_keep"] == [3, 3, 3]
    assert min(out["kept_out_per_conv"]) >= 3 and abs(out["objective"] - ref.objective) <= 1e-9
    assert out["min_resource"] == dataclasses.replace(prob, min_keep=3).min_resource
    # without the option: the file's minimum (here none, so 1)
    rc = main(["channels", "solve", str(tmp_path / "p.npz"), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["min_keep"] == [1, 1, 1]
    assert abs(out["objective"] - channels.brute_force(prob).objective) <= 1e-9
    assert main(["channels", "solve", str(tmp_path / "p.npz"), "--min-keep", "5"]) == 2
    assert "`min_keep`" in capsys.readouterr().err
