"""The channel B&B's LP relaxation (combax.solvers._channels_lp). Specification: the bound that the first-order
method's duals prove is an upper bound of the F1 LP relaxation (weak duality) after any number of iterations, hence
of the QCQP, and approaches the LP optimum as it runs; the decomposition multipliers read from the duals give the
count DP (with blocks and folding) a valid bound, never below the optimum; and where the LP is tight they prove the
optimum at the root."""

import numpy as np
import pytest

from combax.solvers import _channels_bnb as bnb
from combax.solvers import channels
from combax.solvers._channels_layout import flat
from combax.solvers._channels_lp import F1Relaxation, lp_duals, pdhg_duals
from combax.solvers._channels_refs import lp_relaxation
from tests.solvers.test_channels import enumerate_optimum, random_instance
from tests.solvers.test_channels_budget import random_instance as chain_instance


def tol(x):
    return 1e-7 * max(1.0, abs(x))


@pytest.mark.parametrize("seed", range(30))
def test_dual_bound_is_valid_at_every_iteration_count_and_converges(seed):
    prob, _ = random_instance(np.random.default_rng(seed), integer=False)
    c = prob._grouped()._c
    f = flat(c)
    lp = lp_relaxation(c)
    bounds = [lp_duals(f, c["budget"], iters).bound for iters in (1, 10, 100, 1000)]
    assert all(b >= lp - tol(lp) for b in bounds)
    assert lp_duals(f, c["budget"], 20000).bound <= lp + 1e-3 * max(1.0, abs(lp))


def test_pdhg_on_a_plain_lp():
    # min -x1 - x2 s.t. x1 + 2 x2 <= 2, 2 x1 + x2 <= 2, 0 <= x <= 1: optimum -4/3 at (2/3, 2/3)
    from scipy.sparse import csr_matrix

    k = csr_matrix(np.array([[1.0, 2.0], [2.0, 1.0]]))
    y, lower, it = pdhg_duals(k, np.array([2.0, 2.0]), np.array([-1.0, -1.0]), 5000)
    assert lower <= -4 / 3 + 1e-12
    assert lower >= -4 / 3 - 1e-6
    assert np.all(y >= 0)
    np.testing.assert_allclose(y, [1 / 3, 1 / 3], atol=1e-4)


def test_pdhg_stops_at_the_target():
    from scipy.sparse import csr_matrix

    k = csr_matrix(np.array([[1.0, 2.0], [2.0, 1.0]]))
    _, lower, it = pdhg_duals(k, np.array([2.0, 2.0]), np.array([-1.0, -1.0]), 5000, target=-2.0)
    assert lower >= -2.0
    assert it < 5000


@pytest.mark.parametrize("seed", range(5))
def test_pdhg_continued_in_stages_equals_one_run(seed):
    prob, _ = random_instance(np.random.default_rng(seed), integer=False)
    c = prob._grouped()._c
    f = flat(c)
    staged = F1Relaxation(f, c["budget"])
    first = staged.duals(300)
    second = staged.duals(1000)
    once = lp_duals(f, c["budget"], 1000)
    assert first.bound >= second.bound
    assert second.iterations == once.iterations
    assert second.bound == once.bound
    np.testing.assert_array_equal(second.y, once.y)


def lp_root_bound(prob):
    """The B&B's root bound (blocks and folding on) with the LP multipliers."""
    c = prob._grouped()._c
    f = flat(c)
    ctx = bnb._Ctx(f, c["budget"])
    ctx.use_blocks = ctx.blocks.size > 0
    root = ctx.root()
    lp = ctx.lp_multipliers(2000, np.inf, -np.inf)
    if lp is None:
        return None, ctx
    ctx.set_multipliers(lp[0], lp[1])
    ev = ctx.evaluate(root)
    return (None if ev is None else ev[0]), ctx


@pytest.mark.parametrize("seed", range(60))
def test_lp_multipliers_give_a_valid_bound(seed):
    rng = np.random.default_rng(1000 + seed)
    prob = random_instance(rng, integer=False)[0] if seed % 2 else chain_instance(rng)
    opt = enumerate_optimum(prob)
    bound, ctx = lp_root_bound(prob)
    if bound is None:
        assert ctx.space is None or opt == -np.inf
        return
    assert bound >= opt - 1e-7 * max(1.0, abs(opt))


def test_lp_multipliers_are_used_on_a_resnet():
    # CIFAR ResNet-8 at 50 % FLOPs: the root bound with the LP's multipliers is below the subgradient's, the search
    # keeps them (its message says so) and proves the optimum HiGHS proves
    prob = channels.resnet_cifar(8, 1, ratio=0.5)
    sol = channels.solve(prob, "bnb", time_limit=60)
    assert sol.status == "optimal"
    assert "LP multipliers" in sol.message
    assert channels.solve(prob, "highs", time_limit=60).objective == pytest.approx(sol.objective, rel=1e-9)
