"""The channel B&B's block bound (combax.solvers._channels_blocks): two convs around a narrow inner map bounded
jointly by enumerating the inner map's subsets. Specification: the table equals the maximum over every admissible
(input set, inner set, output set) triple, it never exceeds the two count tables it replaces, and the B&B's root
bound with blocks stays a valid upper bound that is at least as tight as without them."""

import itertools
from math import comb

import numpy as np
import pytest

from combax.solvers import _channels_bnb as bnb
from combax.solvers import channels
from combax.solvers._channels_blocks import _ub_block_kernel, _ub_block_split_kernel, block_offsets, find_blocks
from combax.solvers._channels_kernels import NEG
from combax.solvers._channels_layout import flat
from combax.solvers.channels import ChannelProblem

FULL = (0, 1 << 30, 0, 1 << 30)  # fill every input and output count


def chain_problem(rng, widths):
    convs = [(t - 1, t, rng.lognormal(0, 1, size=(widths[t], widths[t - 1]))) for t in range(1, len(widths))]
    return ChannelProblem(widths, convs, [1.0] * (len(widths) - 1), 1.0)


def random_block_case(rng, min_w, max_w):
    """A chain of three convs (input 1-3 channels, other maps min_w..max_w), random fixings of plain maps (u = v)
    and random multiplier offsets: (widths, flat problem, FU, RO, CO)."""
    widths = [int(rng.integers(1, 4))] + [int(rng.integers(min_w, max_w + 1)) for _ in range(3)]
    f = flat(chain_problem(rng, widths)._c)
    FU = rng.choice(np.array([-1, -1, -1, 0, 1], np.int8), size=(4, f.cmax))
    RO = rng.normal(0, 0.5, size=(4, f.cmax))
    CO = rng.normal(0, 0.5, size=(3, f.cmax))
    return widths, f, FU, RO, CO


def subsets(fix):
    """Every subset of the channels allowed by the fixings (1 in, 0 out, -1 free), as boolean masks."""
    free = np.flatnonzero(fix == -1)
    for bits in itertools.product((False, True), repeat=free.size):
        mask = fix == 1
        mask[free[list(bits)]] = True
        yield mask


def block_table_by_enumeration(f, FU, FV, RO, CO, t):
    s, i = t - 2, t - 1
    cs, ci, co = (int(f.widths[x]) for x in (s, i, t))
    I1 = f.imp[f.off[i - 1] : f.off[i]].reshape(ci, cs)
    I2 = f.imp[f.off[t - 1] : f.off[t]].reshape(co, ci)
    table = np.full((cs + 1, ci + 1, co + 1), NEG)
    cols = FV[s, :cs] if s > 0 else np.ones(cs, np.int8)
    for A in subsets(FU[i, :ci]):
        for B in subsets(cols):
            for O in subsets(FU[t, :co]):
                if not (A.any() and B.any() and O.any()):  # no map is empty
                    continue
                v = (I1[np.ix_(A, B)].sum() + I2[np.ix_(O, A)].sum() + RO[i, :ci][A].sum() + CO[t - 1, :ci][A].sum()
                     + CO[i - 1, :cs][B].sum() + RO[t, :co][O].sum())  # fmt: skip
                idx = (B.sum(), A.sum(), O.sum())
                table[idx] = max(table[idx], v)
    return table


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("max_all, max_near", [(1 << 16, 0), (4, 5), (1, 1)])
def test_block_table_is_the_maximum_over_every_admissible_triple(seed, max_all, max_near):
    # every inner set while 2^f <= max_all (exact for every inner count); else only the inner sets that drop at most
    # d free channels, exact for the inner counts the kernel reports
    rng = np.random.default_rng(seed)
    widths, f, FU, RO, CO = random_block_case(rng, 1, 5)
    FV = FU.copy()  # plain maps: u = v
    for t in (2, 3):  # a block on the fixed input map and one after it
        shape = (widths[t - 2] + 1, widths[t - 1] + 1, widths[t] + 1)
        BT = np.full(int(np.prod(shape)) + 5, 7.0)
        a_lo = _ub_block_kernel(f.widths, f.imp, f.off, FU, FV, RO, CO, t, BT, 2, max_all, max_near, *FULL)
        n_fixed = int((FU[t - 1, : widths[t - 1]] == 1).sum())
        n_free = int((FU[t - 1, : widths[t - 1]] == -1).sum())
        if max_all >= 1 << n_free:
            assert a_lo == 0
        else:
            dropped = n_fixed + n_free - a_lo  # the largest d with sum_{r <= d} C(f, r) <= max_near
            assert sum(comb(n_free, r) for r in range(dropped + 1)) <= max(max_near, 1)
            assert dropped == n_free or sum(comb(n_free, r) for r in range(dropped + 2)) > max_near
        got = BT[2:-3].reshape(shape)[:, a_lo:]
        want = block_table_by_enumeration(f, FU, FV, RO, CO, t)[:, a_lo:]
        assert np.array_equal(got <= NEG / 2, want <= NEG / 2), (seed, t)
        finite = want > NEG / 2
        np.testing.assert_allclose(got[finite], want[finite], rtol=1e-12, atol=1e-12)
        assert (BT[2:-3].reshape(shape)[:, :a_lo] <= NEG / 2).all(), "no entry below the exact inner counts"
        assert (BT[:2] == 7.0).all() and (BT[-3:] == 7.0).all(), "the kernel writes only its own table"


@pytest.mark.parametrize("seed", range(8))
def test_tables_filled_over_count_ranges_equal_the_full_tables_there(seed):
    # the B&B fills block tables only over the root's input and output count ranges: inside them the entries are
    # those of the full table, outside they are NEG (never read: every node's ranges lie within the root's)
    rng = np.random.default_rng(700 + seed)
    widths, f, FU, RO, CO = random_block_case(rng, 2, 6)
    t = 3
    shape = (widths[1] + 1, widths[2] + 1, widths[3] + 1)
    b_lo, b_hi = sorted(int(x) for x in rng.integers(1, widths[1] + 1, 2))
    o_lo, o_hi = sorted(int(x) for x in rng.integers(1, widths[3] + 1, 2))
    inside = np.zeros(shape, bool)
    inside[b_lo : b_hi + 1, :, o_lo : o_hi + 1] = True
    for fill in (
        lambda out, *r: _ub_block_kernel(f.widths, f.imp, f.off, FU, FU, RO, CO, t, out, 0, 1 << 16, 8, *r),
        lambda out, *r: _ub_block_kernel(f.widths, f.imp, f.off, FU, FU, RO, CO, t, out, 0, 2, 4, *r),  # near-full
        lambda out, *r: _ub_block_split_kernel(
            f.widths, f.imp, f.off, FU, FU, RO, CO, t, 2, out, *r, (FU[2] == 1).astype(np.uint8)
        ),
    ):
        full = np.empty(int(np.prod(shape)))
        part = np.empty_like(full)
        fill(full, *FULL)
        fill(part, b_lo, b_hi, o_lo, o_hi)
        full, part = full.reshape(shape), part.reshape(shape)
        np.testing.assert_array_equal(part[inside], full[inside])
        assert (part[~inside] <= NEG / 2).all()


@pytest.mark.parametrize("seed", range(12))
def test_parts_table_bounds_the_block_and_is_exact_with_one_part(seed):
    rng = np.random.default_rng(300 + seed)
    widths, f, FU, RO, CO = random_block_case(rng, 1, 6)
    for t in (2, 3):
        shape = (widths[t - 2] + 1, widths[t - 1] + 1, widths[t] + 1)
        want = block_table_by_enumeration(f, FU, FU, RO, CO, t)
        targets = (np.zeros(f.cmax, np.uint8), rng.integers(0, 2, f.cmax).astype(np.uint8))  # none, a random set
        for part, target in itertools.product((1, 2, 3, 8), targets):
            got = np.empty(int(np.prod(shape)))
            _ub_block_split_kernel(f.widths, f.imp, f.off, FU, FU, RO, CO, t, part, got, *FULL, target)
            got = got.reshape(shape)
            assert np.array_equal(got <= NEG / 2, want <= NEG / 2), (seed, t, part)
            finite = want > NEG / 2
            assert (got[finite] >= want[finite] - 1e-9).all(), "a valid upper bound of every entry"
            if part >= widths[t - 1]:  # one part holds every free inner channel: the exact table
                np.testing.assert_allclose(got[finite], want[finite], rtol=1e-12, atol=1e-12)


def test_blocks_found_around_plain_inner_maps_only():
    p = channels.resnet_cifar(20, 0)
    f = flat(p._c)
    # stage 1's inner maps 2, 4, 6 (16 wide) and stage 2's 8, 10, 12 (32 wide); never a residual target inside
    assert find_blocks(f, 32).tolist() == [3, 5, 7, 9, 11, 13]
    assert find_blocks(f, 16).tolist() == [3, 5, 7]
    off = block_offsets(f, find_blocks(f, 16))
    assert off.tolist() == [0, 17**3, 2 * 17**3, 3 * 17**3]
    # a plain chain pairs its convs without overlap: (1, 2), (3, 4)
    chain = flat(chain_problem(np.random.default_rng(0), [3, 4, 4, 4, 4, 4])._c)
    assert find_blocks(chain, 8).tolist() == [2, 4]


@pytest.mark.parametrize("seed", range(6))
def test_root_bound_with_blocks_is_valid_and_no_looser(seed):
    rng = np.random.default_rng(50 + seed)
    widths = [2] + [int(rng.integers(2, 4)) for _ in range(4)]
    prob = chain_problem(rng, widths)
    prob = prob.with_budget(prob.min_resource + rng.uniform(0.2, 0.8) * (prob.full_resource - prob.min_resource))
    opt = channels.brute_force(prob).objective
    f = flat(prob._c)
    ctx = bnb._Ctx(f, prob.budget)
    root = ctx.root()
    ctx.RO = rng.normal(0, 0.3, size=ctx.RO.shape)  # any offsets give a valid bound on a chain (u = v everywhere)
    ctx.CO = np.zeros_like(ctx.CO)
    for k in range(ctx.m):  # the reader's column offset cancels the producer's row offset: sum u RO - v RO = 0
        ctx.CO[k, : f.widths[k]] = -ctx.RO[k, : f.widths[k]] if k > 0 else 0.0
    plain = ctx.evaluate(root)[0]
    ctx.use_blocks = True
    blocks = ctx.evaluate(root)[0]
    assert ctx.blocks.size == 2
    assert blocks >= opt - 1e-9 * max(1.0, opt)
    assert blocks <= plain + 1e-9 * max(1.0, plain)


@pytest.mark.parametrize("seed", range(4))
def test_bnb_with_inexact_block_tables_matches_brute_force(seed, monkeypatch):
    # force the wide-map path on tiny maps: exact tables only near full inner width, parts of 2 channels elsewhere
    # at the root and of 1 below it
    monkeypatch.setattr(bnb, "BLOCK_ALL", 2)
    monkeypatch.setattr(bnb, "BLOCK_NEAR", 3)
    monkeypatch.setattr(bnb, "BLOCK_PART", 2)
    monkeypatch.setattr(bnb, "NODE_PART", 1)
    calls = []
    split = bnb._ub_block_split_kernel
    monkeypatch.setattr(bnb, "_ub_block_split_kernel", lambda *a: calls.append(1) or split(*a))
    rng = np.random.default_rng(900 + seed)
    for _ in range(6):
        w = int(rng.integers(2, 4))
        widths = [2, w, int(rng.integers(3, 5)), w, int(rng.integers(3, 5)), int(rng.integers(1, 4))]
        convs = [(t - 1, t, rng.lognormal(0, 1, size=(widths[t], widths[t - 1]))) for t in range(1, 6)]
        prob = ChannelProblem(widths, convs, rng.uniform(0.5, 2, 5).tolist(), 1.0, [(1, 3, "identity")])
        prob = prob.with_budget(prob.min_resource + rng.uniform(0.2, 0.8) * (prob.full_resource - prob.min_resource))
        opt = channels.brute_force(prob).objective
        for limit in (1, 5, None):
            sol = channels.solve(prob, "bnb", node_limit=limit)
            assert sol.bound >= opt - 1e-9 * max(1.0, opt)
            assert prob.evaluate(sol.keep_out, sol.keep).feasible
            if limit is None:
                assert sol.status == "optimal" and abs(sol.objective - opt) <= 1e-9 * max(1.0, opt)
    assert calls, "the parts' tables were used"


def test_blocks_around_wide_inner_maps_the_root_keeps_whole_are_dropped():
    prob = channels.resnet_cifar(20, 0, ratio=0.5)
    f = flat(prob._c)
    ctx = bnb._Ctx(f, prob.budget)
    assert find_blocks(f, 64).tolist() == [3, 5, 7, 9, 11, 13, 15, 17, 19]
    assert ctx.blocks.tolist() == find_blocks(f, bnb.BLOCK_WIDTH).tolist()
    profile = f.widths.copy()  # every map whole, but the inner map of the block ending at 17 (64 wide)
    profile[16] = 60
    ctx.drop_wide_full_blocks(profile)
    # 16- and 32-wide inner maps keep their blocks (cheap); of the 64-wide ones only the partly kept one stays
    assert ctx.blocks.tolist() == [3, 5, 7, 9, 11, 13, 17]
    assert ctx.boff[-1] == 3 * 17**3 + 17 * 33 * 33 + 2 * 33**3 + 65**3  # (C_s + 1)(C_i + 1)(C_t + 1) each
