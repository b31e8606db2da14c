"""FactorVAE metric (both variants) on synthetic codes, the Gini-type variance, and the best-matching accuracy."""

import itertools
import re

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from combax.adapters import disentanglement as dis

SIZES = dis.DSPRITES_FACTOR_SIZES  # (3, 6, 40, 32, 32)


def perfect(classes):
    """Each factor copied into one dimension (scaled, shifted), plus two pure-noise dimensions."""
    rng = np.random.default_rng(int(classes.sum()) % 2**32)
    cls = np.asarray(classes, dtype=np.float64)
    noise = rng.normal(size=(len(cls), 2))
    return np.concatenate([3.0 * cls + 1.0, noise], axis=1), None


def noise(seed):
    rng = np.random.default_rng(seed)
    return lambda classes: (rng.normal(size=(len(classes), 5)), None)


@pytest.mark.parametrize("variant", ["original", "dlib"])
def test_perfectly_disentangled_codes_score_one(variant):
    kw = {"n_votes": 200, "n_eval_votes": 100} if variant == "dlib" else {"n_votes": 200}
    res = dis.factor_vae_score(perfect, SIZES, variant=variant, n_global=2000, seed=0, **kw)
    assert res.score == 1.0 and res.train_accuracy == 1.0
    assert res.votes.shape == (7, 5)
    np.testing.assert_array_equal(res.votes[:5].argmax(axis=1), np.arange(5))  # dimension f votes for factor f
    assert res.votes[5:].sum() == 0
    if variant == "original":
        np.testing.assert_array_equal(res.votes[:5].sum(axis=1), 40)  # 200 votes cycling over the 5 factors
        assert res.eval_accuracy is None
    else:
        assert res.eval_accuracy == 1.0


def test_original_variant_with_ground_truth_factors_and_every_dimension_active():
    """Spec check: a representation equal to the ground-truth factors (all dimensions active) scores 1.0."""
    represent = lambda cls: (np.asarray(cls, np.float64), None)  # noqa: E731
    res = dis.factor_vae_score(represent, SIZES, active=np.ones(5, bool), n_votes=800, batch_size=100, seed=2)
    assert res.score == 1.0


@pytest.mark.parametrize("variant", ["original", "dlib"])
def test_pure_noise_scores_about_one_over_n_factors(variant):
    kw = {"n_votes": 2000, "n_eval_votes": 2000} if variant == "dlib" else {"n_votes": 800}
    res = dis.factor_vae_score(noise(1), SIZES, variant=variant, n_global=2000, seed=1, **kw)
    if variant == "original":  # train accuracy of a majority vote over noise: a little above 1/5
        assert 0.2 <= res.score < 0.3
    else:  # eval accuracy on fresh votes: 1/5 up to sampling noise
        assert abs(res.score - 0.2) < 0.04


def test_no_active_dimension_scores_one_fifth():
    res = dis.factor_vae_score(noise(0), SIZES, active=np.zeros(5, bool), n_votes=50, seed=0)
    assert res.score == pytest.approx(0.2) and res.votes.sum() == 0


def test_discrete_latent_counts_as_one_more_dimension():
    """Shape carried only by the discrete code (relabelled), the other factors copied: the discrete row wins shape."""

    def represent(classes):
        cls = np.asarray(classes)
        return cls[:, 1:].astype(np.float64), (cls[:, 0] + 1) % 3

    for variant in ("original", "dlib"):
        res = dis.factor_vae_score(represent, SIZES, variant=variant, n_votes=100, n_eval_votes=50, seed=4)
        assert res.score == 1.0 and res.votes.shape == (5, 5) and res.active[-1]
        assert res.votes[-1, 0] == res.votes[:, 0].sum() > 0, "every shape vote goes to the discrete latent"


def test_active_mask_excludes_dimensions():
    """With the dimension that carries factor 0 masked out, its votes go elsewhere and the score drops below 1."""
    active = np.array([False, True, True, True, True, True, True])
    res = dis.factor_vae_score(perfect, SIZES, active=active, n_votes=100, seed=0)
    assert res.votes[0].sum() == 0 and res.score < 1.0


def test_gini_variance_matches_its_formula_and_the_unbiased_variance_on_binary_codes():
    rng = np.random.default_rng(0)
    for n, k in [(2, 2), (7, 3), (50, 4)]:
        lab = rng.integers(0, k, size=n)
        counts = np.bincount(lab)
        expected = (n * n - (counts.astype(float) ** 2).sum()) / (2 * n * (n - 1))
        pairs = sum(lab[i] != lab[j] for i in range(n) for j in range(n)) / (2 * n * (n - 1))
        assert dis.gini_variance(lab) == pytest.approx(expected) == pytest.approx(pairs)
    b = rng.integers(0, 2, size=30)
    assert dis.gini_variance(b) == pytest.approx(b.var(ddof=1))
    assert dis.gini_variance(np.zeros(5, int)) == 0.0
    batch = rng.integers(0, 3, size=(4, 10))  # along the last axis, row by row
    np.testing.assert_allclose(dis.gini_variance(batch), [dis.gini_variance(r) for r in batch])


def _lsa_accuracy(pred, lab):
    k = max(pred.max(), lab.max()) + 1
    confusion = np.zeros((k, k), int)
    np.add.at(confusion, (pred, lab), 1)
    r, c = linear_sum_assignment(-confusion)
    return confusion[r, c].sum() / len(pred)


@pytest.mark.parametrize("seed", range(5))
def test_classification_accuracy_is_the_best_matching(seed):
    rng = np.random.default_rng(seed)
    lab = rng.integers(0, 3, size=60)
    pred = np.where(rng.random(60) < 0.6, (lab + seed) % 3, rng.integers(0, 3, size=60))
    acc = dis.classification_accuracy(pred, lab)
    assert acc == pytest.approx(_lsa_accuracy(pred, lab))
    brute = max(np.mean(np.asarray(perm)[pred] == lab) for perm in itertools.permutations(range(3)))
    assert acc == pytest.approx(brute) and acc >= np.mean(pred == lab)


def test_classification_accuracy_edge_cases():
    lab = np.array([0, 0, 1, 1, 2, 2])
    assert dis.classification_accuracy(np.array([7, 7, 5, 5, 9, 9]), lab) == 1.0  # any category names
    assert dis.classification_accuracy(np.zeros(6, int), lab) == pytest.approx(1 / 3)
    # more categories than classes: the unmatched category counts as errors
    assert dis.classification_accuracy(np.array([0, 0, 1, 1, 2, 3]), lab) == pytest.approx(5 / 6)


@pytest.mark.parametrize(
    ("kwargs", "msg"),
    [
        ({"factor_sizes": (3, 1)}, "`factor_sizes` must list factors with at least 2 values each; got (3, 1)"),
        ({"variant": "kim"}, "`variant` must be 'original' or 'dlib'; got 'kim'"),
        ({"n_votes": 3}, "`n_votes` must be at least the number of factors 5; got 3"),
        ({"batch_size": 1}, "`batch_size` and `n_global` must be at least 2; got 1 and 10000"),
        ({"active": np.ones(3, bool)}, "`active` must have shape (7,), one flag per continuous dimension; got (3,)"),
    ],
)
def test_factor_vae_errors(kwargs, msg):
    args = {"factor_sizes": SIZES, **kwargs}
    with pytest.raises(ValueError, match=re.escape(msg)):
        dis.factor_vae_score(perfect, **args)


def test_classification_accuracy_errors():
    with pytest.raises(ValueError, match=re.escape("`predicted` and `labels` must be 1-d of equal length; got (3,)")):
        dis.classification_accuracy([0, 1, 2], [0, 1])
    with pytest.raises(ValueError, match=re.escape("`predicted` must not be empty")):
        dis.classification_accuracy([], [])


def test_a_collapsed_discrete_latent_takes_no_votes_unless_asked():
    def represent(classes):
        cls = np.asarray(classes, np.float64)
        return cls, np.zeros(len(cls), np.int64)  # the discrete code never changes

    res = dis.factor_vae_score(represent, SIZES, n_votes=50, seed=0)
    assert res.score == 1.0 and not res.active[-1] and res.votes[-1].sum() == 0
    rng = np.random.default_rng(0)
    noisy = lambda classes: (rng.normal(size=(len(classes), 5)), np.zeros(len(classes), np.int64))  # noqa: E731
    orig = dis.factor_vae_score(noisy, SIZES, n_votes=50, seed=0, skip_constant_discrete=False)
    assert orig.score == pytest.approx(0.2) and orig.votes[-1].sum() == 50, "0 / (0 + 1e-10) wins every vote"
