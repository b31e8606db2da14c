"""The channel B&B's budget-exact count DP (combax.solvers._channels_budget). Specification: for any tables it returns
the maximum, over the count profiles the Lagrangian DP ranges over, of the tables' sum among the profiles whose rounded
step costs fit the rounded budget; rounding down keeps every profile within the budget, so the value bounds every
solution; and in the B&B it can only lower the bound, never below the optimum."""

import itertools

import numpy as np
import pytest

from combax.solvers import _channels_bnb as bnb
from combax.solvers import channels
from combax.solvers._channels_budget import _step_cost, _units, budget_dp_kernel, step_minima
from combax.solvers._channels_kernels import NEG, _block_min
from combax.solvers._channels_layout import flat
from combax.solvers.channels import ChannelProblem


def random_instance(rng, max_bits=14):
    """A random small network for the DP: a chain of 2-5 convs (so blocks around plain inner maps), residuals of
    every kind, sometimes a conv reading an earlier map (its input count is free in the DP), sometimes linear cost
    terms with a negative intercept (a fitted latency model); a budget between the smallest and the full network."""
    while True:
        m = int(rng.integers(2, 6))
        widths = [int(rng.integers(1, 4))] + [int(rng.integers(1, 5)) for _ in range(m)]
        src = [t - 1 if (t == 1 or rng.random() < 0.85) else int(rng.integers(0, t - 1)) for t in range(1, m + 1)]
        residuals = []
        for t in range(3, m + 1, 2):
            if rng.random() < 0.6:
                s, kind = t - 2, ("identity", "zero_pad", "projection")[int(rng.integers(3))]
                if kind == "identity":
                    widths[t] = widths[s]
                elif kind == "zero_pad":
                    if widths[s] >= 4:
                        continue
                    widths[t] = int(rng.integers(widths[s] + 1, 5))
                residuals.append((s, t, kind))
        convs = [(src[t - 1], t, rng.lognormal(0, 1, size=(widths[t], widths[src[t - 1]]))) for t in range(1, m + 1)]
        cost = rng.uniform(0, 5, size=m)
        lin = None
        if rng.random() < 0.3:
            lin = np.column_stack([rng.uniform(0, 3, m), rng.uniform(0, 3, m), rng.uniform(-5, 5, m)])
        try:
            prob = ChannelProblem(widths, convs, cost, 0.0, residuals, lin)
        except ValueError:
            continue  # an unread map: draw again
        if prob.n_binaries > max_bits or prob.full_resource <= prob.min_resource:
            continue
        lo, hi = prob.min_resource, prob.full_resource
        return prob.with_budget(lo + rng.uniform(0.02, 0.98) * (hi - lo))


def root_tables(prob):
    """The B&B context of ``prob`` at its root, tables (with blocks where the network has them) in place."""
    f = flat(prob._c)
    ctx = bnb._Ctx(f, prob.budget)
    ctx.use_blocks = ctx.blocks.size > 0
    root = ctx.root()
    assert ctx.evaluate(root) is not None
    bk = ctx.block_tables(root) if ctx.use_blocks else ctx.no_blocks
    BM = _block_min(f.widths, ctx.toff, ctx.T, bk, ctx.boff, ctx.BT, ctx.bfrom, root.nlo, root.nhi, root.mlo, root.mhi)
    return f, ctx, root, bk, BM


def profile_steps(f, ctx, root, bk, BM, n, mm, free_in):
    """(value, [cost of each DP step]) of one count profile, in the Lagrangian DP's relaxation: n / mm the maps'
    output / kept counts, free_in[k] the input count of a conv whose source is not the previous map (free there)."""
    val, costs = 0.0, []
    m = f.widths.size - 1
    t = 1
    while t <= m:
        if t + 1 <= m and bk[t + 1] >= 0:
            t += 1
            continue
        k = t - 1
        if bk[t] >= 0:
            q, s, i = bk[t], t - 2, t - 1
            b, a, a2 = mm[s], n[i], n[t]
            t1 = ctx.ub_at(k - 1, a, b)
            t2 = ctx.ub_at(k, a2, a)
            if t1 <= NEG / 2 or t2 <= NEG / 2:
                return None
            if a >= ctx.bfrom[q]:
                v = BM[ctx.boff[q] + (b * (f.widths[i] + 1) + a) * (f.widths[t] + 1) + a2]
                if v <= NEG / 2:
                    return None
            else:
                v = t1 + t2
            val += v
            costs.append((_step_cost(f.cost, f.lin, k - 1, a, b) + _step_cost(f.cost, f.lin, k, a2, a), (k - 1, k)))
        else:
            s = f.src[k]
            b = mm[s] if s == t - 1 else free_in[k]
            v = ctx.ub_at(k, n[t], b)
            if v <= NEG / 2:
                return None
            val += v
            costs.append((_step_cost(f.cost, f.lin, k, n[t], b), (k,)))
        t += 1
    return val, costs


def enumerate_profiles(f, root):
    """Every count profile within the root's ranges that the Lagrangian DP's residual relaxation allows."""
    m = f.widths.size - 1
    n_ranges = [range(int(root.nlo[t]), int(root.nhi[t]) + 1) for t in range(1, m + 1)]
    for n in itertools.product(*n_ranges):
        n = (int(f.widths[0]),) + n
        m_ranges = []
        for t in range(1, m + 1):
            if f.res_kind[t] == 0:
                m_ranges.append((n[t],))
                continue
            lo, hi = max(int(root.mlo[t]), n[t]), int(root.mhi[t])  # v_t contains u_t
            if f.res_kind[t] == 2:  # zero_pad: the channels above the source's width follow u
                hi = min(hi, n[t] + int(f.widths[f.res_src[t]]))
            m_ranges.append(range(lo, hi + 1))
        for mm in itertools.product(*m_ranges):
            mm = (int(f.widths[0]),) + mm
            free = [k for k in range(m) if f.src[k] != k]
            for bs in itertools.product(*[range(int(root.mlo[f.src[k]]), int(root.mhi[f.src[k]]) + 1) for k in free]):
                yield n, mm, dict(zip(free, bs))


def small_cases(n_cases, seed):
    rng = np.random.default_rng(seed)
    return [random_instance(rng) for _ in range(n_cases)]


CASES = small_cases(24, 2024)


@pytest.mark.parametrize("i", range(len(CASES)))
def test_budget_dp_is_the_best_profile_within_the_rounded_budget_and_bounds_the_optimum(i):
    prob = CASES[i]
    f, ctx, root, bk, BM = root_tables(prob)
    cmin = np.empty(f.src.size)
    step_minima(f.src, f.cost, f.lin, root.nlo, root.mlo, cmin)
    room = ctx.budget_relaxed - cmin.sum()
    assert room > 0
    profiles = [p for p in (profile_steps(f, ctx, root, bk, BM, *x) for x in enumerate_profiles(f, root)) if p]
    optimum = channels.brute_force(prob).objective
    for units in (1, 3, 17, 200):
        unit = room / units
        got = budget_dp_kernel(f.widths, f.src, f.res_src, f.res_kind, f.cost, f.lin, ctx.toff, ctx.T, bk, ctx.boff,
                               ctx.BT, ctx.bfrom, root.nlo, root.nhi, root.mlo, root.mhi, cmin, unit, units)  # fmt: skip
        want = max(
            (v for v, cs in profiles if sum(_units(c - sum(cmin[k] for k in ks), unit) for c, ks in cs) <= units),
            default=NEG,
        )
        assert got == pytest.approx(want, rel=1e-12, abs=1e-12), (units, got, want)
        assert got >= optimum - 1e-9 * max(1.0, abs(optimum))  # rounding down keeps every solution's profile
    exact = max((v for v, cs in profiles if sum(c for c, _ in cs) <= ctx.budget_relaxed), default=NEG)
    assert got >= exact - 1e-12 * max(1.0, abs(exact))


def test_rounding_only_relaxes():
    # floor(x / unit), a little lower against round-off: never above the exact quotient, never negative
    rng = np.random.default_rng(5)
    for x, unit in zip(rng.uniform(0, 100, 500), rng.uniform(0.01, 10, 500)):
        q = _units(x, unit)
        assert 0 <= q <= x / unit
        assert q >= np.floor(x / unit) - 1
    assert _units(0.0, 1.0) == 0


@pytest.mark.parametrize("seed", range(6))
def test_bnb_bound_with_the_budget_dp_stays_valid_and_finds_the_optimum(seed, monkeypatch):
    rng = np.random.default_rng(900 + seed)
    prob = random_instance(rng, max_bits=16)
    bf = channels.brute_force(prob)
    monkeypatch.setattr(bnb, "BUDGET_DP", True)
    for limit in (1, 3, 10, 100):
        sol = channels.solve(prob, "bnb", node_limit=limit)
        assert sol.bound >= bf.objective - 1e-9 * max(1.0, bf.objective)
        assert prob.evaluate(sol.keep_out, sol.keep).feasible
    full = channels.solve(prob, "bnb")
    assert full.status == "optimal"
    assert full.objective == pytest.approx(bf.objective, rel=1e-9, abs=1e-12)


def test_the_budget_dp_lowers_the_root_bound_on_coarse_instances(monkeypatch):
    # where a count step moves a large share of the resource the budget's duality gap is large: some of the small
    # random instances get a strictly lower root bound with the budget-exact DP, none a higher one
    lowered = 0
    for prob in CASES:
        roots = {}
        for on in (False, True):
            monkeypatch.setattr(bnb, "BUDGET_DP", on)
            roots[on] = channels.solve(prob, "bnb", node_limit=1).bound
        assert roots[True] <= roots[False] + 1e-12 * max(1.0, abs(roots[False]))
        lowered += roots[True] < roots[False] - 1e-9 * max(1.0, abs(roots[False]))
    assert lowered >= 1
