"""sparse_codes / balanced_labels against exhaustive enumeration of all C(d, k)^n code matrices (spec §5)."""

import itertools

import numpy as np
import pytest

from combax.solvers import assign

RTOL = 1e-9


def brute_force_energy(scores, k, lam, groups=None, lam_group=0.0):
    """Minimum energy over every assignment of k distinct buckets to each row (vectorised enumeration)."""
    n, d = scores.shape
    subsets = np.zeros((0, d))
    rows = []
    for combo in itertools.combinations(range(d), k):
        row = np.zeros(d)
        row[list(combo)] = 1.0
        rows.append(row)
    subsets = np.array(rows)  # (m, d)
    m = subsets.shape[0]
    idx = np.array(list(itertools.product(range(m), repeat=n)))  # (m^n, n)
    z = subsets[idx]  # (m^n, n, d)
    unary = -(z * scores[None]).sum(axis=(1, 2))
    load = z.sum(axis=1)
    e = unary + lam * (load * (load - 1) / 2).sum(axis=1)
    if groups is not None:
        for g in np.unique(groups):
            gl = z[:, groups == g, :].sum(axis=1)
            e = e + lam_group * (gl * (gl - 1) / 2).sum(axis=1)
    return float(e.min())


def _instances(seed, count, with_groups):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        n = int(rng.integers(1, 5))
        d = int(rng.integers(1, 6))
        k = int(rng.integers(1, d + 1))
        kind = rng.integers(0, 3)
        if kind == 0:
            scores = rng.random((n, d))
        elif kind == 1:  # many exact ties
            scores = rng.integers(0, 3, (n, d)).astype(float)
        else:  # wide range, negative values
            scores = rng.normal(0, 5, (n, d))
        lam = float(rng.choice([0.0, 0.1, 0.5, 1.0, 3.0]))
        if with_groups:
            groups = rng.integers(0, 2, n)
            lam_group = float(rng.choice([0.0, 1.0, 100.0]))
        else:
            groups, lam_group = None, 0.0
        yield scores, k, lam, groups, lam_group


@pytest.mark.parametrize("with_groups", [False, True], ids=["flat", "groups"])
def test_numba_matches_brute_force(with_groups):
    mismatches = []
    for t, (s, k, lam, g, lg) in enumerate(_instances(10 + with_groups, 600, with_groups)):
        codes = assign.sparse_codes(s, k, lam, groups=g, lam_group=lg)
        assert codes.dtype == bool and codes.shape == s.shape
        assert (codes.sum(axis=1) == k).all()
        got = assign.energy(s, codes, lam, groups=g, lam_group=lg)
        want = brute_force_energy(s, k, lam, g, lg)
        if not np.isclose(got, want, rtol=RTOL, atol=RTOL):
            mismatches.append((t, got, want))
    assert not mismatches, mismatches[:5]


@pytest.mark.parametrize("backend", ["ortools", "networkx"])
def test_reference_backends_match_brute_force(backend):
    pytest.importorskip("ortools" if backend == "ortools" else "networkx", reason=f"{backend} backend not installed")
    mismatches = []
    count = 0
    for with_groups in (False, True):
        for s, k, lam, g, lg in _instances(20 + with_groups, 150, with_groups):
            codes = assign.sparse_codes(s, k, lam, groups=g, lam_group=lg, backend=backend)
            assert (codes.sum(axis=1) == k).all()
            got = assign.energy(s, codes, lam, groups=g, lam_group=lg)
            want = brute_force_energy(s, k, lam, g, lg)
            count += 1
            if not np.isclose(got, want, rtol=RTOL, atol=RTOL):
                mismatches.append((got, want))
    assert count == 300
    assert not mismatches, mismatches[:5]


@pytest.mark.parametrize("backend", assign.LABEL_BACKENDS)
def test_balanced_labels_match_brute_force(backend):
    if backend == "ortools":
        pytest.importorskip("ortools", reason="ortools backend not installed")
    rng = np.random.default_rng(30)
    for _ in range(60):
        n = int(rng.integers(1, 6))
        n_cat = int(rng.integers(1, 5))
        cost = rng.normal(0, 1, (n, n_cat)) * rng.choice([1.0, 10.0])
        lam = float(rng.choice([0.0, 0.001, 0.5, 2.0]))
        labels = assign.balanced_labels(cost, lam, backend=backend)
        assert labels.shape == (n,) and labels.dtype == np.int64
        assert ((labels >= 0) & (labels < n_cat)).all()
        got = cost[np.arange(n), labels].sum() + lam * sum(c * (c - 1) / 2 for c in np.bincount(labels))
        best = min(
            cost[np.arange(n), list(lab)].sum() + lam * sum(c * (c - 1) / 2 for c in np.bincount(lab))
            for lab in itertools.product(range(n_cat), repeat=n)
        )
        assert got == pytest.approx(best, rel=RTOL, abs=RTOL)
