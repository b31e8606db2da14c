"""Channel selection (specs/channel_qcqp.md): oracle instances T1-T4, random instances against brute force,
invariants on every solution, B&B bounds, input errors and edge cases, builder sizes.

Every solution is checked by ``check_solution``, which recomputes objective, resource and the "no inactive weight"
invariants from the masks without going through :meth:`ChannelProblem.evaluate` (and then also through it).
"""

import itertools

import numpy as np
import pytest

from combax.solvers import channels
from combax.solvers.channels import ChannelProblem

EXACT = ("bnb", "cpsat", "highs", "cbc")
REL = 1e-6


def close(a, b, rel=REL):
    return abs(a - b) <= rel * max(1.0, abs(a), abs(b))


# ------------------------------------------------------------------------------------------------ the checker
def check_solution(prob: ChannelProblem, sol, spec, strict_gap=True):
    """Assert every invariant of spec section 5b on ``sol``; ``spec`` = (widths, convs, cost, lin, residuals, group)
    as given to the problem (convs in the user's order). ``strict_gap``: "optimal" means gap <= 1e-6 (not for
    CP-SAT on non-integer data, whose bound is relaxed by the rounding of its integer model)."""
    widths, convs, cost, lin, residuals, group = spec
    widths = [int(w) for w in widths]
    m = len(widths) - 1
    assert sol.keep is not None and sol.keep_out is not None
    keep = [np.asarray(k, bool) for k in sol.keep]
    keep_out = [np.asarray(k, bool) for k in sol.keep_out]
    assert len(keep) == m + 1 and len(keep_out) == m
    assert keep[0].all(), "the input map is always kept"
    res_of = {int(t): (int(s), kind) for s, t, kind in residuals}
    producer = {}
    readers = {t: [] for t in range(m + 1)}
    obj = 0.0
    resource = 0.0
    lin = np.zeros((m, 3)) if lin is None else np.asarray(lin, float)
    for k, (s, t, imp) in enumerate(convs):
        producer[t] = k
        readers[s].append(k)
        u, v = keep_out[k], keep[s]
        assert u.shape == (widths[t],) and keep[t].shape == (widths[t],)
        assert u.any(), f"conv {k} keeps no output (empty layer)"
        obj += float(u.astype(float) @ np.asarray(imp, float) @ v.astype(float))
        n, mm = int(u.sum()), int(v.sum())
        resource += cost[k] * n * mm + lin[k, 0] * mm + lin[k, 1] * n + lin[k, 2]
    for t in range(1, m + 1):
        u, v = keep_out[producer[t]], keep[t]
        assert v.any(), f"map {t} keeps no channel"
        # every kept conv output reaches the map its readers see (no weight feeds a dead channel)
        assert not np.any(u & ~v), f"map {t}: kept output channel dropped after the add (inactive weights)"
        if t not in res_of:
            assert np.array_equal(u, v)
        else:
            s, kind = res_of[t]
            fed = u.copy()
            if kind in ("identity", "zero_pad"):
                fed[: widths[s]] |= keep[s]
            if kind == "zero_pad":
                np.testing.assert_array_equal(v[widths[s] :], u[widths[s] :])  # padded channels carry nothing
            # every live channel has a producer: the conv or the shortcut (a projection shortcut is a 1x1 conv
            # outside the model that produces every channel of the map)
            if kind != "projection":
                assert not np.any(v & ~fed), f"map {t}: a kept channel has no producer"
        # every live channel has a consumer: a reader keeps at least one filter that reads it (all filters read
        # all kept inputs), or the map is the network output
        if t < m:
            assert readers[t] and any(keep_out[k].any() for k in readers[t])
    if group is not None:
        g = np.broadcast_to(np.asarray(group), (m + 1,))
        for t in range(1, m + 1):
            for arr in (keep[t], keep_out[producer[t]]):
                blocks = arr.reshape(-1, g[t])
                assert np.all(blocks.all(1) == blocks.any(1)), "a channel group was split"
    assert resource <= prob.budget + 1e-9 * max(1.0, abs(prob.budget))
    assert close(sol.objective, obj, 1e-9), (sol.objective, obj)
    assert close(sol.resource, resource, 1e-9), (sol.resource, resource)
    ev = prob.evaluate(sol.keep_out, sol.keep)
    assert ev.feasible, ev.violations
    assert close(ev.objective, sol.objective, 1e-12) and close(ev.resource, sol.resource, 1e-12)
    if np.isfinite(sol.bound):
        assert sol.bound >= sol.objective - 1e-9 * max(1.0, abs(sol.objective))
        assert close(sol.gap, max(0.0, (sol.bound - sol.objective) / max(abs(sol.bound), 1e-12)), 1e-9)
    if strict_gap and sol.status == "optimal" and np.isfinite(sol.gap):
        assert sol.gap <= 1e-6


def make(widths, convs, cost, budget, residuals=(), lin=None, group=None):
    prob = ChannelProblem(widths, convs, cost, budget, residuals, lin, group)
    return prob, (widths, convs, cost, lin, residuals, group)


_ENUM_CACHE = {}


def enumerate_optimum(prob: ChannelProblem):
    """A second, plain oracle: every assignment of every mask, each checked by ``prob.evaluate`` (tiny only)."""
    key = id(prob)
    if key not in _ENUM_CACHE:
        _ENUM_CACHE[key] = (prob, _enumerate_optimum(prob))
    return _ENUM_CACHE[key][1]


def _enumerate_optimum(prob: ChannelProblem):
    c = prob._c
    w = [int(x) for x in c["widths"]]
    m = len(w) - 1
    targets = [t for t in range(1, m + 1) if c["res_kind"][t]]
    # a zero-padded map's channels above C_s must equal u (anything else is infeasible): enumerate only the rest
    nv = {t: int(w[c["res_src"][t]]) if c["res_kind"][t] == 2 else w[t] for t in targets}
    order = c["order"]
    best = -np.inf
    bits = sum(w[1:]) + sum(nv.values())
    assert bits <= 16
    for x in itertools.product((False, True), repeat=bits):
        x = np.array(x)
        pos = 0
        u = [None]
        for t in range(1, m + 1):
            u.append(x[pos : pos + w[t]])
            pos += w[t]
        v = [np.ones(w[0], bool)] + [u[t] for t in range(1, m + 1)]
        for t in targets:
            v[t] = u[t].copy()
            v[t][: nv[t]] = x[pos : pos + nv[t]]
            pos += nv[t]
        keep_out = [None] * m
        for k in range(m):
            keep_out[order[k]] = u[k + 1]
        ev = prob.evaluate(keep_out, v)
        if ev.feasible and ev.objective > best:
            best = ev.objective
    return best


# ------------------------------------------------------------------------------------------------ oracle instances
def t1(budget=40.0, seed=1):
    """T1: widths [2, 3, 3, 2], 1x1 convs, identity residual 1 -> 2, integer importances 1..9, costs [4, 2, 3]."""
    rng = np.random.default_rng(seed)
    widths = [2, 3, 3, 2]
    convs = [(k, k + 1, rng.integers(1, 10, size=(widths[k + 1], widths[k])).astype(float)) for k in range(3)]
    return make(widths, convs, [4.0, 2.0, 3.0], budget, [(1, 2, "identity")])


def t2(budget=None, seed=2):
    """T2: zero-padded shortcut C_s = 2 -> C_t = 4 (maps 1 -> 3), integer importances."""
    rng = np.random.default_rng(seed)
    widths = [2, 2, 3, 4, 2]
    convs = [(k, k + 1, rng.integers(0, 10, size=(widths[k + 1], widths[k])).astype(float)) for k in range(4)]
    cost = [1.0, 2.0, 2.0, 1.0]
    full = sum(c * widths[k + 1] * widths[k] for k, c in enumerate(cost))
    return make(widths, convs, cost, 0.45 * full if budget is None else budget, [(1, 3, "zero_pad")])


def t4(budget=None, seed=4):
    """T4: latency model (bilinear + linear terms, negative intercepts), group size 2, identity residual."""
    rng = np.random.default_rng(seed)
    widths = [2, 4, 4, 4, 2]
    convs = [(k, k + 1, rng.integers(0, 10, size=(widths[k + 1], widths[k])).astype(float)) for k in range(4)]
    cost = [0.5, 0.3, 0.4, 0.2]
    lin = np.array([[0.3, 1.0, -2.0], [0.5, 0.25, -1.5], [0.2, 0.75, -0.5], [1.0, 0.0, -3.0]])
    prob, spec = make(widths, convs, cost, 1.0, [(1, 3, "identity")], lin, 2)
    b = prob.min_resource + 0.5 * (prob.full_resource - prob.min_resource) if budget is None else budget
    return make(widths, convs, cost, b, [(1, 3, "identity")], lin, 2)


@pytest.mark.parametrize("method", EXACT)
def test_t1_chain_with_residual(method):
    prob, spec = T1
    assert prob.n_binaries == 11
    bf = channels.brute_force(prob)
    assert bf.status == "optimal" and bf.n_nodes == 2048
    assert close(bf.objective, enumerate_optimum(prob))
    check_solution(prob, bf, spec)
    sol = channels.solve(prob, method)
    assert sol.status == "optimal"
    assert close(sol.objective, bf.objective), (method, sol.objective, bf.objective)
    check_solution(prob, sol, spec)


def test_t1_budget_sweep_all_methods():
    prob0, spec = T1
    for b in np.linspace(prob0.min_resource, prob0.full_resource, 9):
        prob = prob0.with_budget(b)
        bf = channels.brute_force(prob)
        for method in EXACT:
            sol = channels.solve(prob, method)
            assert close(sol.objective, bf.objective), (b, method)
            check_solution(prob, sol, spec)
        g = channels.solve(prob, "greedy")
        check_solution(prob, g, spec)
        assert g.objective <= bf.objective + 1e-9


@pytest.mark.parametrize("method", EXACT)
def test_t2_zero_pad_shortcut(method):
    prob, spec = T2
    assert prob.n_binaries == 2 + 3 + 4 + 2 + 2  # v above C_s is u
    bf = channels.brute_force(prob)
    assert close(bf.objective, enumerate_optimum(prob))
    sol = channels.solve(prob, method)
    assert sol.status == "optimal" and close(sol.objective, bf.objective)
    check_solution(prob, sol, spec)  # asserts v_t[j] == u_t[j] for j >= C_s


def test_t2_padded_channels_follow_the_conv_at_every_budget():
    prob0, spec = T2
    for b in np.linspace(prob0.min_resource, prob0.full_resource, 7):
        prob = prob0.with_budget(b)
        bf = channels.brute_force(prob)
        for method in ("bnb", "highs"):
            sol = channels.solve(prob, method)
            check_solution(prob, sol, spec)
            assert close(sol.objective, bf.objective)


@pytest.mark.parametrize("method", EXACT)
def test_t4_latency_model_with_groups(method):
    prob, spec = T4
    assert prob.n_binaries == 2 + 2 + 2 + 1 + 2  # per group of 2
    assert prob.min_resource < 0 or prob._c["lin"][:, 2].min() < 0  # negative intercepts present
    bf = channels.brute_force(prob)
    sol = channels.solve(prob, method)
    assert sol.status == "optimal" and close(sol.objective, bf.objective), (method, sol.objective, bf.objective)
    check_solution(prob, sol, spec)


def test_t4_grouped_equals_ungrouped_with_tied_variables():
    # the grouped problem's optimum equals the best ungrouped selection that keeps whole groups (enumerated)
    prob, spec = T4
    best = -np.inf
    c = prob._c
    w = [int(x) for x in c["widths"]]
    nb = prob.n_binaries
    for x in itertools.product((False, True), repeat=nb):
        x = np.repeat(np.array(x), 2)
        pos = 0
        u = [None]
        for t in range(1, 5):
            u.append(x[pos : pos + w[t]])
            pos += w[t]
        v = [np.ones(2, bool)] + u[1:]
        v = list(v)
        v[3] = x[pos : pos + 4]
        ev = prob.evaluate(u[1:], v)
        if ev.feasible:
            best = max(best, ev.objective)
    assert close(channels.brute_force(prob).objective, best)
    assert close(channels.solve(prob).objective, best)


def test_t4_budget_sweep():
    prob0, spec = T4
    for b in np.linspace(prob0.min_resource, prob0.full_resource, 8):
        prob = prob0.with_budget(b)
        bf = channels.brute_force(prob)
        for method in ("bnb", "cpsat", "highs"):
            sol = channels.solve(prob, method)
            check_solution(prob, sol, spec)
            assert close(sol.objective, bf.objective), (b, method)


T1, T2, T4 = t1(), t2(), t4()


# ------------------------------------------------------------------------------------------------ T3: 4D taps
def _taps_brute(imp4, keep_out, keep, src, tap_cost, budget):
    """Every tap mask of the kept filters (tiny only)."""
    from combax.solvers._channels_taps import tap_objective

    slots = [(k, j, t) for k in range(len(imp4)) for j in np.flatnonzero(keep_out[k]) for t in range(imp4[k].shape[2])]
    assert len(slots) <= 18
    best = -np.inf
    for x in itertools.product((False, True), repeat=len(slots)):
        taps = [np.zeros((a.shape[0], a.shape[2]), bool) for a in imp4]
        for on, (k, j, t) in zip(x, slots):
            taps[k][j, t] = on
        if any(not taps[k][j].any() for k in range(len(imp4)) for j in np.flatnonzero(keep_out[k])):
            continue
        obj, res = tap_objective(imp4, taps, keep, src, tap_cost)
        if res <= budget + 1e-9 and obj > best:
            best = obj
    return best


def _t3(seed=3):
    rng = np.random.default_rng(seed)
    widths = [2, 2, 2]
    imp4 = [rng.integers(0, 10, size=(widths[k + 1], widths[k], 4)).astype(float) for k in range(2)]
    convs4 = [(k, k + 1, imp4[k]) for k in range(2)]
    return widths, convs4, imp4, [4.0, 1.0]


def test_t3_taps_exact_with_channels_fixed():
    widths, convs4, imp4, tap_cost = _t3()
    keep = [np.ones(2, bool), np.array([True, True]), np.array([True, False])]
    keep_out = [keep[1], keep[2]]
    full = sum(tap_cost[k] * keep[k].sum() * keep_out[k].sum() * 4 for k in range(2))
    for frac in (0.2, 0.35, 0.5, 0.75, 1.0):
        budget = frac * full
        taps, obj, res, st = channels.select_taps(imp4, keep_out, keep, [0, 1], tap_cost, budget)
        if taps is None:
            assert st == "infeasible"
            assert _taps_brute(imp4, keep_out, keep, [0, 1], tap_cost, budget) == -np.inf
            continue
        assert st == "optimal" and res <= budget + 1e-9
        for k in range(2):
            assert not np.any(taps[k][~keep_out[k]]), "q <= u: a pruned filter keeps no tap"
            assert np.all(taps[k][keep_out[k]].any(1)), "a kept filter keeps at least one tap"
        assert close(obj, _taps_brute(imp4, keep_out, keep, [0, 1], tap_cost, budget))


def test_t3_two_stage_solve_4d():
    widths, convs4, imp4, tap_cost = _t3()
    full = sum(tap_cost[k] * 2 * 2 * 4 for k in range(2))
    for gamma in (0.5, 1.0):
        r = channels.solve_4d(widths, convs4, tap_cost, 0.5 * full, gamma=gamma)
        assert r.taps is not None and r.status == "optimal"
        ch = r.channels
        assert ch.status == "optimal"
        for k in range(2):
            assert not np.any(r.taps[k][~np.asarray(ch.keep_out[k])])
            assert np.all(r.taps[k][np.asarray(ch.keep_out[k])].any(1))
        assert r.resource <= 0.5 * full + 1e-9
        assert close(r.objective, _taps_brute(imp4, list(ch.keep_out), list(ch.keep), [0, 1], tap_cost, 0.5 * full))
    # stage 1 solves the summed-importance channel problem with budget B / gamma
    r = channels.solve_4d(widths, convs4, tap_cost, 0.5 * full, gamma=0.5)
    prob = ChannelProblem(widths, [(s, d, a.sum(2)) for s, d, a in convs4], [4 * c for c in tap_cost], full)
    assert r.channels.objective == channels.solve(prob).objective  # B / 0.5 = full: everything kept
    with pytest.raises(ValueError, match="gamma"):
        channels.solve_4d(widths, convs4, tap_cost, full, gamma=0.0)


# ------------------------------------------------------------------------------------------------ random instances
def random_instance(rng, integer=True, max_bits=14):
    """A random tiny network: chain or DAG of convs, residuals of every kind, linear terms, groups."""
    while True:
        m = int(rng.integers(1, 5))
        widths = [int(rng.integers(1, 4))] + [int(rng.integers(1, 5)) for _ in range(m)]
        src = [t - 1 if (t == 1 or rng.random() < 0.75) else int(rng.integers(0, t - 1)) for t in range(1, m + 1)]
        residuals = []
        for t in range(2, m + 1):
            if rng.random() < 0.45:
                s = int(rng.integers(0, t))
                r = rng.random()
                if r < 0.4:
                    widths[t] = widths[s]
                    kind = "identity"
                elif r < 0.75:
                    if widths[s] >= 4:
                        continue
                    widths[t] = int(rng.integers(widths[s] + 1, 5))
                    kind = "zero_pad"
                else:
                    kind = "projection"
                residuals.append((s, t, kind))
        if integer:
            imps = [rng.integers(0, 10, size=(widths[t], widths[src[t - 1]])).astype(float) for t in range(1, m + 1)]
            for a in imps:
                if rng.random() < 0.2:
                    a[int(rng.integers(0, a.shape[0]))] = 0.0  # an all-zero row
            cost = rng.integers(0, 6, size=m).astype(float)
        else:
            imps = [rng.lognormal(0, 1, size=(widths[t], widths[src[t - 1]])) for t in range(1, m + 1)]
            cost = rng.uniform(0, 5, size=m)
        lin = None
        if rng.random() < 0.3:
            lin = np.column_stack([rng.integers(0, 4, m), rng.integers(0, 4, m), rng.integers(-5, 6, m)]).astype(float)
        convs = [(src[t - 1], t, imps[t - 1]) for t in range(1, m + 1)]
        perm = rng.permutation(m) if rng.random() < 0.3 else np.arange(m)  # convs in any order
        convs = [convs[i] for i in perm]
        cost = [float(cost[i]) for i in perm]
        lin = None if lin is None else lin[perm]
        group = None
        if rng.random() < 0.15:
            group = [1] + [2 if w % 2 == 0 else 1 for w in widths[1:]]
        try:
            prob = ChannelProblem(widths, convs, cost, 0.0, residuals, lin, group)
        except ValueError:
            continue  # an unread map or incompatible groups: draw again
        if prob.n_binaries > max_bits or prob.full_resource <= prob.min_resource:
            continue
        lo, hi = prob.min_resource, prob.full_resource
        r = rng.random()
        budget = lo if r < 0.05 else lo + rng.uniform(0.02, 0.98) * (hi - lo)
        if integer:
            budget = float(np.floor(budget)) if np.floor(budget) >= lo else float(np.ceil(budget))
        return make(widths, convs, cost, budget, residuals, lin, group)


def _random_cases(n, seed, integer):
    rng = np.random.default_rng(seed)
    return [random_instance(rng, integer) for _ in range(n)]


INT_CASES = _random_cases(240, 1234, True)
FLOAT_CASES = _random_cases(90, 4321, False)


@pytest.mark.parametrize("chunk", range(8))
def test_random_integer_instances_every_method_equals_brute_force(chunk):
    for i, (prob, spec) in enumerate(INT_CASES[chunk::8]):
        bf = channels.brute_force(prob)
        if prob.budget < prob.min_resource:
            assert bf.status == "infeasible"
            continue
        assert bf.status == "optimal"
        check_solution(prob, bf, spec)
        for method in EXACT if i % 3 == 0 else ("bnb", "cpsat", "highs"):  # CBC (a subprocess each) on a third
            sol = channels.solve(prob, method)
            assert sol.status == "optimal", (chunk, i, method, sol.message)
            assert close(sol.objective, bf.objective), (chunk, i, method, sol.objective, bf.objective)
            check_solution(prob, sol, spec)
        g = channels.solve(prob, "greedy")
        check_solution(prob, g, spec)
        assert g.objective <= bf.objective + 1e-9 * max(1, bf.objective)


@pytest.mark.parametrize("chunk", range(3))
def test_random_float_instances_bnb_highs_equal_brute_force(chunk):
    for i, (prob, spec) in enumerate(FLOAT_CASES[chunk::3]):
        bf = channels.brute_force(prob)
        check_solution(prob, bf, spec)
        for method in ("bnb", "highs"):
            sol = channels.solve(prob, method)
            assert sol.status == "optimal"
            assert close(sol.objective, bf.objective), (chunk, i, method, sol.objective, bf.objective)
            check_solution(prob, sol, spec)
        # CP-SAT scales non-integer importances and resource coefficients to integers (coefficients rounded up,
        # budget down): always feasible, and at least as good as the optimum under a slightly smaller budget
        cp = channels.solve(prob, "cpsat")
        tight = channels.brute_force(prob.with_budget(prob.budget - 1e-4 * max(1.0, prob.full_resource)))
        if cp.keep is None:
            assert cp.status == "infeasible" and tight.status == "infeasible"
        else:
            check_solution(prob, cp, spec, strict_gap=False)
            if tight.status == "optimal":
                assert cp.objective >= tight.objective - 1e-4 * max(1.0, bf.objective)
        g = channels.solve(prob, "greedy")
        check_solution(prob, g, spec)
        assert g.objective <= bf.objective + 1e-9 * max(1, bf.objective)


def test_bnb_at_a_budget_equal_to_the_minimum_resource():
    # regression: with float costs the bound's DP summed the minimum resource in another order than the validator,
    # found it 1 ulp above the budget, declared the root infeasible and returned the greedy as "optimal"
    for prob, spec in FLOAT_CASES[:40]:
        p = prob.with_budget(prob.min_resource)
        bf = channels.brute_force(p)
        sol = channels.solve(p, "bnb")
        assert sol.status == "optimal" and close(sol.objective, bf.objective), (sol.message, bf.objective)
        check_solution(p, sol, spec)


def test_enough_random_instances_and_brute_force_matches_the_plain_enumeration():
    assert len(INT_CASES) + len(FLOAT_CASES) >= 300
    kinds = {kind for _, spec in INT_CASES + FLOAT_CASES for _, _, kind in spec[4]}
    assert kinds == {"identity", "zero_pad", "projection"}
    assert any(spec[5] is not None for _, spec in INT_CASES)
    assert any(spec[3] is not None for _, spec in INT_CASES)
    small = [p for p, _ in INT_CASES if p.n_binaries <= 11][:25]
    for prob in small:
        if prob._c["group"].max() > 1:
            continue
        bf = channels.brute_force(prob)
        ref = enumerate_optimum(prob)
        assert (bf.status == "infeasible" and ref == -np.inf) or close(bf.objective, ref)


# ------------------------------------------------------------------------------------------------ B&B bounds
@pytest.mark.parametrize("seed", range(6))
def test_bnb_bound_valid_at_every_node_limit(seed):
    rng = np.random.default_rng(100 + seed)
    prob, spec = random_instance(rng, integer=False, max_bits=16)
    bf = channels.brute_force(prob)
    for limit in (1, 2, 3, 5, 10, 30, 100):
        sol = channels.solve(prob, "bnb", node_limit=limit)
        check_solution(prob, sol, spec)
        assert sol.bound >= bf.objective - 1e-9 * max(1.0, bf.objective), (limit, sol.bound, bf.objective)
        assert sol.objective <= bf.objective + 1e-9 * max(1.0, bf.objective)
        assert sol.status in ("optimal", "node_limit")
        if sol.status == "optimal":
            assert close(sol.objective, bf.objective)


@pytest.mark.parametrize("seed", range(12))
def test_count_reduction_keeps_the_counts_of_every_solution_above_the_floor(seed):
    from combax.solvers import _channels_bnb as bnb
    from combax.solvers._channels_layout import flat

    rng = np.random.default_rng(700 + seed)
    prob, _ = random_instance(rng, integer=False, max_bits=16)
    while np.any(prob._c["group"] != 1):  # the B&B's counts are the grouped problem's; keep to one channel per group
        prob, _ = random_instance(rng, integer=False, max_bits=16)
    bf = channels.brute_force(prob)
    c = prob._c
    n = [int(c["widths"][0])] + [int(bf.keep_out[c["order"][k]].sum()) for k in range(prob.n_maps)]
    mm = [int(v.sum()) for v in bf.keep]
    ctx = bnb._Ctx(flat(c), prob.budget)
    root = ctx.root()
    ev = ctx.evaluate(root)
    assert ev is not None
    cut = bf.objective - 1e-6 * max(1.0, abs(bf.objective))  # the optimum lies above this floor
    ctx.reduce_counts(root, cut)
    for t in range(1, prob.n_maps + 1):
        assert root.nlo[t] <= n[t] <= root.nhi[t], (t, n[t], root.nlo[t], root.nhi[t])
        assert root.mlo[t] <= mm[t] <= root.mhi[t], (t, mm[t], root.mlo[t], root.mhi[t])


def test_count_reduction_cuts_the_far_counts_on_resnet8():
    from combax.solvers import _channels_bnb as bnb
    from combax.solvers._channels_layout import flat

    prob = channels.resnet_cifar(8, 0, ratio=0.7)
    best = channels.solve(prob, "highs", time_limit=60, rel_gap=1e-9)
    assert best.status == "optimal"
    ctx = bnb._Ctx(flat(prob._c), prob.budget)
    root = ctx.root()
    ctx.evaluate(root)
    before = int((root.nhi - root.nlo).sum() + (root.mhi - root.mlo).sum())
    assert ctx.reduce_counts(root, best.objective - 1e-9 * best.objective)
    after = int((root.nhi - root.nlo).sum() + (root.mhi - root.mlo).sum())
    assert after < before


def test_bnb_bound_valid_under_limits_on_resnet8():
    prob = channels.resnet_cifar(8, 0, ratio=0.5, group_size=4)
    ref = channels.solve(prob, "highs", time_limit=30)
    assert ref.status == "optimal"
    for kw in ({"node_limit": 1}, {"node_limit": 5}, {"node_limit": 50}, {"time_limit": 0.05}, {"time_limit": 0.5}):
        sol = channels.solve(prob, "bnb", **kw)
        assert sol.keep is not None and prob.evaluate(sol.keep_out, sol.keep).feasible
        assert sol.bound >= ref.objective - 1e-9 and sol.bound >= sol.objective
        assert close(sol.gap, (sol.bound - sol.objective) / sol.bound, 1e-9)
        if sol.status != "optimal":
            assert sol.gap > 0
    # the root bound of greedy and B&B is an upper bound on every solution found by anyone
    g = channels.solve(prob, "greedy")
    assert g.bound >= ref.objective - 1e-9 and g.objective <= ref.objective + 1e-9
    full = channels.solve(prob, "bnb", time_limit=30)
    assert full.status == "optimal" and close(full.objective, ref.objective)


def test_rel_gap_stops_early_with_a_consistent_gap():
    prob = channels.resnet_cifar(8, 1, ratio=0.4)
    sol = channels.solve(prob, "bnb", rel_gap=0.05, time_limit=20)
    assert sol.status == "optimal" and sol.gap <= 0.05 + 1e-12
    assert close(sol.gap, (sol.bound - sol.objective) / sol.bound, 1e-9)


def test_small_resnet_bnb_matches_highs():
    # ResNet-8 with channel groups of 4 (4/8/16 groups per stage): small enough for the MILP to prove optimality
    prob = channels.resnet_cifar(8, 3, ratio=0.5, group_size=4)
    b = channels.solve(prob, "bnb", time_limit=30)
    h = channels.solve(prob, "highs", time_limit=30)
    assert b.status == "optimal" and h.status == "optimal"
    assert close(b.objective, h.objective, 1e-6)
    assert b.bound >= h.objective - 1e-9 and h.bound >= b.objective - 1e-6


# ------------------------------------------------------------------------------------------------ edge cases, errors
@pytest.mark.parametrize("method", EXACT + ("greedy",))
def test_budget_below_minimum_is_infeasible_with_the_minimum(method):
    prob, _ = T1
    p = prob.with_budget(prob.min_resource - 1)
    sol = channels.solve(p, method)
    assert sol.status == "infeasible" and sol.keep is None and not sol.success
    assert sol.min_resource == prob.min_resource
    assert f"{prob.min_resource:g}" in sol.message
    assert channels.brute_force(p).status == "infeasible"


@pytest.mark.parametrize("method", EXACT + ("greedy",))
def test_budget_at_or_above_full_keeps_everything(method):
    prob, spec = T2
    for b in (prob.full_resource, prob.full_resource * 2):
        sol = channels.solve(prob.with_budget(b), method)
        assert sol.status == "optimal"
        assert all(np.all(k) for k in sol.keep) and all(np.all(k) for k in sol.keep_out)
        total = sum(float(imp.sum()) for _, _, imp in spec[1])
        assert close(sol.objective, total)


def test_budget_at_minimum_keeps_one_channel_per_map():
    prob, spec = T1
    p = prob.with_budget(prob.min_resource)
    for method in EXACT:
        sol = channels.solve(p, method)
        check_solution(p, sol, spec)
        assert sol.resource <= prob.min_resource + 1e-9
        assert close(sol.objective, channels.brute_force(p).objective)


def test_ties_are_deterministic():
    widths = [2, 3, 3, 2]
    convs = [(k, k + 1, np.ones((widths[k + 1], widths[k]))) for k in range(3)]
    prob, spec = make(widths, convs, [1.0, 1.0, 1.0], 12.0, [(1, 2, "identity")])
    opt = channels.brute_force(prob).objective
    for method in ("bnb", "greedy", "cpsat", "highs"):
        a = channels.solve(prob, method)
        b = channels.solve(prob, method)
        check_solution(prob, a, spec)
        assert close(a.objective, b.objective)
        if method == "cpsat":  # its two workers race: which of the tied optima it returns depends on thread timing
            continue
        assert all(np.array_equal(x, y) for x, y in zip(a.keep, b.keep))
        assert all(np.array_equal(x, y) for x, y in zip(a.keep_out, b.keep_out))
    assert close(channels.solve(prob).objective, opt)


def test_all_zero_importance():
    widths = [2, 3, 2]
    convs = [(0, 1, np.zeros((3, 2))), (1, 2, np.zeros((2, 3)))]
    prob, spec = make(widths, convs, [1.0, 1.0], 8.0)
    for method in EXACT + ("greedy",):
        sol = channels.solve(prob, method)
        check_solution(prob, sol, spec)
        assert sol.objective == 0.0


def test_input_errors_name_the_argument():
    w = [2, 3]
    good = np.ones((3, 2))
    with pytest.raises(ValueError, match=r"convs\[0\].*importance.*non-negative"):
        ChannelProblem(w, [(0, 1, -good)], [1.0], 5.0)
    with pytest.raises(ValueError, match=r"convs\[0\].*importance.*shape"):
        ChannelProblem(w, [(0, 1, np.ones((2, 3)))], [1.0], 5.0)
    with pytest.raises(ValueError, match=r"convs\[0\].*finite"):
        ChannelProblem(w, [(0, 1, np.full((3, 2), np.nan))], [1.0], 5.0)
    with pytest.raises(ValueError, match="`cost`"):
        ChannelProblem(w, [(0, 1, good)], [1.0, 2.0], 5.0)
    with pytest.raises(ValueError, match="`cost`"):
        ChannelProblem(w, [(0, 1, good)], [-1.0], 5.0)
    with pytest.raises(ValueError, match="`widths`"):
        ChannelProblem([2, 0], [(0, 1, np.ones((0, 2)))], [1.0], 5.0)
    with pytest.raises(ValueError, match="`convs`"):
        ChannelProblem([2, 3, 3], [(0, 1, good)], [1.0], 5.0)
    with pytest.raises(ValueError, match="`budget`"):
        ChannelProblem(w, [(0, 1, good)], [1.0], np.inf)
    with pytest.raises(ValueError, match="`linear_cost`"):
        ChannelProblem(w, [(0, 1, good)], [1.0], 5.0, linear_cost=np.ones((2, 3)))
    w3 = [2, 3, 3]
    convs = [(0, 1, good), (1, 2, np.ones((3, 3)))]
    with pytest.raises(ValueError, match=r"`residuals\[0\]` kind"):
        ChannelProblem(w3, convs, [1.0, 1.0], 5.0, [(1, 2, "concat")])
    with pytest.raises(ValueError, match=r"`residuals\[0\]`"):
        ChannelProblem(w3, convs, [1.0, 1.0], 5.0, [(0, 2, "identity")])  # widths 2 and 3
    with pytest.raises(ValueError, match=r"`residuals\[0\]`"):
        ChannelProblem(w3, convs, [1.0, 1.0], 5.0, [(1, 2, "zero_pad")])  # needs C_src < C_dst
    with pytest.raises(ValueError, match="`group_size`"):
        ChannelProblem(w3, convs, [1.0, 1.0], 5.0, group_size=2)
    prob = ChannelProblem(w, [(0, 1, good)], [1.0], 5.0)
    with pytest.raises(ValueError, match="`method`"):
        channels.solve(prob, "cplex")
    with pytest.raises(ValueError, match="`time_limit`"):
        channels.solve(prob, time_limit=0)
    with pytest.raises(ValueError, match="`rel_gap`"):
        channels.solve(prob, rel_gap=1.5)
    with pytest.raises(ValueError, match="`node_limit`"):
        channels.solve(prob, node_limit=0)
    with pytest.raises(TypeError, match="`prob`"):
        channels.solve("p.npz")
    big = channels.resnet_cifar(8, 0)
    with pytest.raises(ValueError, match="brute force takes at most"):
        channels.brute_force(big)


def test_evaluate_reports_broken_invariants():
    prob, _ = T1
    w = [2, 3, 3, 2]
    keep = [np.ones(x, bool) for x in w]
    keep_out = [np.ones(x, bool) for x in w[1:]]
    ev = prob.with_budget(1e9).evaluate(keep_out, keep)
    assert ev.feasible
    bad_keep = [k.copy() for k in keep]
    bad_keep[2][0] = False  # conv output 0 of map 2 kept, channel dropped after the add
    assert any("inactive" in v for v in prob.with_budget(1e9).evaluate(keep_out, bad_keep).violations)
    empty = [k.copy() for k in keep_out]
    empty[0][:] = False
    assert any("keeps no output" in v for v in prob.with_budget(1e9).evaluate(empty, keep).violations)
    assert any("exceeds the budget" in v for v in prob.with_budget(1.0).evaluate(keep_out, keep).violations)
    with pytest.raises(ValueError, match="`keep_out`"):
        prob.evaluate(keep_out[:2], keep)


# ------------------------------------------------------------------------------------------------ builders
def test_resnet20_sizes_match_the_spec():
    prob = channels.resnet_cifar(20, 0, ratio=0.5)
    c = prob._c
    assert prob.n_maps == 19 and prob.n_bilinear == 29_744
    # spec count: 691 u (incl. the 3 fixed input channels) + 336 v = 1,027; free binaries exclude the input and the
    # zero-padded v above C_s (16 + 32), which equal u
    assert prob.n_binaries == 976
    n_u = int(c["widths"].sum())
    n_v = int(sum(c["widths"][t] for t in np.flatnonzero(c["res_kind"])))
    assert (n_u, n_v, n_u + n_v) == (691, 336, 1027)
    assert n_u + n_v - 3 - (16 + 32) == prob.n_binaries
    assert close(prob.budget, 0.5 * prob.full_resource, 1e-12)
    kinds = [int(k) for k in c["res_kind"][c["res_kind"] > 0]]
    assert kinds.count(2) == 2 and kinds.count(1) == 7
    assert channels.resnet_cifar(56, 0).n_bilinear == 94_256
    assert channels.resnet_cifar(32, 0).n_bilinear == 51_248


def test_resnet20_bnb_short_run_is_valid():
    prob = channels.resnet_cifar(20, 0, ratio=0.5)
    sol = channels.solve(prob, "bnb", time_limit=2.0)
    g = channels.solve(prob, "greedy")
    assert sol.keep is not None and prob.evaluate(sol.keep_out, sol.keep).feasible
    assert sol.objective >= g.objective - 1e-9 and sol.bound >= sol.objective
    assert sol.bound <= g.bound + 1e-9  # the search never loosens the root bound
    assert sol.resource <= prob.budget


def test_builders_validate():
    with pytest.raises(ValueError, match="`depth`"):
        channels.resnet_cifar(21)
    with pytest.raises(ValueError, match="`resource`"):
        channels.resnet_cifar(8, resource="latency")
    with pytest.raises(ValueError, match="`ratio`"):
        channels.resnet_cifar(8, ratio=0)
    v = channels.vgg_chain((3, 4, 4, 2), 0, ratio=0.5)
    assert v.n_maps == 3 and v.n_binaries == 10
    sol = channels.solve(v)
    assert close(sol.objective, channels.brute_force(v).objective)


def test_bnb_stops_its_root_stages_at_the_time_limit():
    # the root's stages (LP multipliers, subgradient, window search, count reduction) start only while time is left:
    # a limit shorter than the incumbent heuristics skips them all and returns the plain root bound, still valid
    prob = channels.resnet_cifar(20, 0, ratio=0.5)
    sol = channels.solve(prob, "bnb", time_limit=0.01)
    assert sol.status == "time_limit" and sol.n_nodes == 1
    assert "LP multipliers" not in sol.message and "window search" not in sol.message
    assert prob.evaluate(sol.keep_out, sol.keep).feasible
    assert sol.bound >= sol.objective and sol.bound <= channels.solve(prob, "greedy").bound + 1e-9


def test_bnb_verbose_shows_the_root_stages_and_the_search(capsys):
    prob = channels.resnet_cifar(8, 0, ratio=0.5)
    sol = channels.solve(prob, "bnb", time_limit=30, verbose=True)
    err = capsys.readouterr().err
    for stage in ("root local search", "root prefix DP", "root LP multipliers"):
        assert f"channels bnb ({stage})" in err
    assert f"incumbent={sol.objective:.6g}" in err.replace("\r", "\n").splitlines()[-1]
