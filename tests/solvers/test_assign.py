"""Properties of assign.sparse_codes / energy / balanced_labels (spec hash_flow.md §5) and its input errors."""

import re

import numpy as np
import pytest

from combax.solvers import assign


def topk_codes(scores, k):
    """Per-row top-k (index-stable)."""
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    z = np.zeros(scores.shape, bool)
    np.put_along_axis(z, order, True, axis=1)
    return z


def collisions(z):
    load = z.sum(axis=0)
    return int((load * (load - 1) // 2).sum())


def test_every_row_has_exactly_k_distinct_ones():
    rng = np.random.default_rng(0)
    for n, d, k in [(1, 1, 1), (7, 3, 3), (30, 12, 5), (50, 50, 4), (5, 40, 2)]:
        z = assign.sparse_codes(rng.random((n, d)), k, lam=0.7)
        assert z.dtype == bool and z.shape == (n, d)
        assert (z.sum(axis=1) == k).all()


def test_lam_zero_gives_per_row_top_k():
    rng = np.random.default_rng(1)
    for _ in range(30):
        s = rng.random((int(rng.integers(1, 40)), int(rng.integers(4, 40))))
        k = int(rng.integers(1, 5))
        z = assign.sparse_codes(s, k, 0.0)
        assert assign.energy(s, z, 0.0) == pytest.approx(assign.energy(s, topk_codes(s, k), 0.0), rel=1e-12)
        assert (z == topk_codes(s, k)).all()  # distinct continuous scores: the top-k is unique


def test_never_worse_than_top_k_or_greedy():
    rng = np.random.default_rng(2)
    for _ in range(20):
        n, d, k = 20, 16, 3
        s = rng.random((n, d))
        lam = float(rng.choice([0.1, 1.0, 5.0]))
        e = assign.energy(s, assign.sparse_codes(s, k, lam), lam)
        assert e <= assign.energy(s, topk_codes(s, k), lam) + 1e-12
        # greedy: rows in order, each takes its best k buckets given current loads
        load = np.zeros(d)
        greedy = np.zeros((n, d), bool)
        for i in range(n):
            pick = np.argsort(-(s[i] - lam * load), kind="stable")[:k]
            greedy[i, pick] = True
            load[pick] += 1
        assert e <= assign.energy(s, greedy, lam) + 1e-12


def test_loads_balance_at_large_lam():
    rng = np.random.default_rng(3)
    for n, d, k in [(10, 7, 2), (33, 16, 4), (64, 64, 4), (5, 9, 3)]:
        s = rng.random((n, d))
        lam = 2.0 * n * (s.max() - s.min()) + 1.0  # larger than the spread of the unaries times n
        load = assign.sparse_codes(s, k, lam).sum(axis=0)
        assert load.max() - load.min() <= 1


def test_collisions_monotone_in_lam():
    rng = np.random.default_rng(4)
    lams = [0.0, 0.01, 0.05, 0.1, 0.3, 1.0, 3.0, 10.0]
    for _ in range(15):
        s = rng.random((24, 12))
        counts = [collisions(assign.sparse_codes(s, 3, lam)) for lam in lams]
        assert all(a >= b for a, b in zip(counts, counts[1:])), counts


def test_row_constant_shift_keeps_the_optimum():
    rng = np.random.default_rng(5)
    s = rng.random((30, 10))
    shift = rng.normal(0, 10, (30, 1))
    k, lam = 3, 0.4
    e0 = assign.energy(s, assign.sparse_codes(s, k, lam), lam)
    z1 = assign.sparse_codes(s + shift, k, lam)
    assert assign.energy(s + shift, z1, lam) == pytest.approx(e0 - k * shift.sum(), rel=1e-9)
    assert assign.energy(s, z1, lam) == pytest.approx(e0, rel=1e-9)


def test_permutation_equivariance():
    rng = np.random.default_rng(6)
    s = rng.random((25, 11))
    groups = rng.integers(0, 4, 25)
    k, lam, lg = 2, 0.5, 2.0
    z = assign.sparse_codes(s, k, lam, groups=groups, lam_group=lg)
    pr, pc = rng.permutation(25), rng.permutation(11)
    zp = assign.sparse_codes(s[pr][:, pc], k, lam, groups=groups[pr], lam_group=lg)
    # continuous scores: the optimum is unique, so the solution itself permutes
    assert (zp == z[pr][:, pc]).all()


def test_siblings_disjoint_at_large_group_penalty():
    rng = np.random.default_rng(7)
    s = rng.random((12, 16))
    groups = np.repeat([0, 1, 2], 4)  # |group| * k = 8 <= d
    z = assign.sparse_codes(s, 2, 0.1, groups=groups, lam_group=100.0)
    for g in range(3):
        assert (z[groups == g].sum(axis=0) <= 1).all()


def test_group_labels_are_any_integers():
    rng = np.random.default_rng(8)
    s = rng.random((9, 6))
    a = assign.sparse_codes(s, 2, 0.3, groups=np.repeat([0, 1, 2], 3), lam_group=1.0)
    b = assign.sparse_codes(s, 2, 0.3, groups=np.repeat([-5, 70, 9], 3), lam_group=1.0)
    assert assign.energy(s, a, 0.3, np.repeat([0, 1, 2], 3), 1.0) == pytest.approx(
        assign.energy(s, b, 0.3, np.repeat([0, 1, 2], 3), 1.0), rel=1e-12
    )


def test_edge_cases_all_equal_large_lam_single_row():
    z = assign.sparse_codes(np.zeros((6, 4)), 2, 1.0)  # all-equal scores
    assert (z.sum(axis=1) == 2).all() and z.sum(axis=0).max() - z.sum(axis=0).min() <= 1
    z = assign.sparse_codes(np.random.default_rng(9).random((8, 8)), 3, 1e12)  # large lam
    assert z.sum(axis=0).max() - z.sum(axis=0).min() <= 1
    assert (assign.sparse_codes(np.array([[0.2, 0.9, 0.5]]), 2, 5.0) == [[False, True, True]]).all()  # n = 1
    assert assign.sparse_codes(np.array([[1.0]]), 1, 0.0).tolist() == [[True]]


def test_deterministic():
    rng = np.random.default_rng(10)
    s = rng.integers(0, 3, (40, 10)).astype(float)  # many ties
    a = assign.sparse_codes(s, 3, 0.5)
    for _ in range(3):
        assert (assign.sparse_codes(s.copy(), 3, 0.5) == a).all()


def test_float_scores_are_not_rounded():
    # two buckets whose scores differ by 1e-9: the 1e4 int32 scaling of the original would call this a tie
    s = np.array([[1.0, 1.0 + 1e-9, 0.0], [1.0 + 1e-9, 1.0, 0.0]])
    z = assign.sparse_codes(s, 1, lam=10.0)
    assert z.tolist() == [[False, True, False], [True, False, False]]


def test_energy_formula():
    s = np.array([[1.0, 2.0, 3.0], [0.5, 0.0, 4.0], [1.0, 1.0, 1.0]])
    z = np.array([[0, 1, 1], [0, 1, 1], [1, 0, 1]])
    # unary -(2+3+0+4+1+1) = -11; loads (1, 2, 3) -> pairs 0+1+3 = 4; group {0, 1}: loads (0, 2, 2) -> 2 pairs
    assert assign.energy(s, z, 0.5) == pytest.approx(-11 + 0.5 * 4)
    assert assign.energy(s, z, 0.5, groups=[0, 0, 1], lam_group=3.0) == pytest.approx(-11 + 2 + 3 * 2)


def test_balanced_labels_is_k1_sparse_codes():
    rng = np.random.default_rng(11)
    u = rng.normal(30, 5, (64, 3))
    for lam in (0.0, 0.001, 1.0, 100.0):
        labels = assign.balanced_labels(u, lam)
        ref = assign.balanced_labels(u, lam, backend="scipy")
        e = [
            u[np.arange(64), lab].sum() + lam * sum(c * (c - 1) / 2 for c in np.bincount(lab)) for lab in (labels, ref)
        ]
        assert e[0] == pytest.approx(e[1], rel=1e-12)
    assert (assign.balanced_labels(u, 0.0) == u.argmin(axis=1)).all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(scores=np.array([[np.nan, 1.0]])), "`scores` must be finite; got 1 NaN or inf entries"),
        (dict(scores=np.array([[np.inf, 1.0]])), "`scores` must be finite; got 1 NaN or inf entries"),
        (dict(scores=np.zeros((0, 3))), "`scores` must be non-empty; got shape (0, 3)"),
        (dict(scores=np.zeros(3)), "`scores` must be a 2-D (n, d) array; got shape (3,)"),
        (dict(k=0), "`k` must satisfy 1 <= k <= d = 3 (k distinct buckets per row); got 0"),
        (dict(k=4), "`k` must satisfy 1 <= k <= d = 3 (k distinct buckets per row); got 4"),
        (dict(k=1.5), "`k` must be an integer; got 1.5"),
        (dict(lam=-1.0), "`lam` must be finite and >= 0; got -1.0"),
        (dict(lam=np.nan), "`lam` must be finite and >= 0; got nan"),
        (dict(groups=[0, 1, 0]), "`groups` must be a 1-D array of length n = 2 (one label per row); got shape (3,)"),
        (dict(groups=[0.5, 1.0]), "`groups` must hold integer labels; got dtype float64"),
        (dict(lam_group=1.0), "`lam_group` = 1.0 needs `groups`; pass one group label per row"),
        (dict(groups=[0, 1], lam_group=-2.0), "`lam_group` must be finite and >= 0; got -2.0"),
        (dict(backend="cplex"), "`backend` must be one of ('numba', 'ortools', 'networkx'); got 'cplex'"),
    ],
)
def test_sparse_codes_errors(kwargs, message):
    args = dict(scores=np.ones((2, 3)), k=1, lam=1.0) | kwargs
    with pytest.raises(ValueError, match=re.escape(message)):
        assign.sparse_codes(**args)


def test_energy_and_labels_errors():
    with pytest.raises(ValueError, match=re.escape("`codes` must have the shape of `scores` (2, 3); got (3, 2)")):
        assign.energy(np.ones((2, 3)), np.ones((3, 2)), 1.0)
    with pytest.raises(ValueError, match=re.escape("`codes` must be boolean or hold only 0 and 1")):
        assign.energy(np.ones((2, 3)), np.full((2, 3), 2), 1.0)
    with pytest.raises(ValueError, match=re.escape("`cost` must be finite; got 1 NaN or inf entries")):
        assign.balanced_labels(np.array([[np.nan, 0.0]]), 1.0)
    with pytest.raises(ValueError, match=re.escape("`backend` must be one of")):
        assign.balanced_labels(np.ones((2, 2)), 1.0, backend="lapjv")
