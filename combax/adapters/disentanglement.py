"""Disentanglement metrics in NumPy: the FactorVAE score (Kim & Mnih 2018) in the CascadeVAE original's variant and in
the disentanglement_lib protocol, and the unsupervised classification accuracy of a discrete latent.

Everything here works on a generic ``represent`` callable, so the metrics can be checked on synthetic codes; the
dSprites glue (render, encode, infer the category) is :func:`dsprites_represent`.

References: H. Kim, A. Mnih, "Disentangling by factorising", ICML 2018, arXiv:1802.05983 (the score and the
Gini-type variance of a discrete code); F. Locatello et al., "Challenging common assumptions in the unsupervised
learning of disentangled representations", ICML 2019, arXiv:1811.12359 (disentanglement_lib's protocol).
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.optimize import linear_sum_assignment

#: (continuous codes (n, m) float, discrete code (n,) int or None)
Represent = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]]


@dataclass(frozen=True, slots=True)
class FactorVAEScore:
    """Result of :func:`factor_vae_score`.

    Attributes
    ----------
    score : float, the headline number: train accuracy for ``variant="original"``, eval accuracy for ``"dlib"``.
    train_accuracy : float, accuracy of the majority-vote classifier on the votes that built it.
    eval_accuracy : float or None, on separate votes (``"dlib"`` only).
    votes : (n_dims, n_factors) int, training votes per (dimension, factor); the last row is the discrete latent
        when one was counted.
    active : (n_dims,) bool, dimensions that took part (the discrete one unless it is constant, see
        ``skip_constant_discrete``).
    variant : "original" or "dlib".
    """

    score: float
    train_accuracy: float
    eval_accuracy: float | None
    votes: np.ndarray
    active: np.ndarray
    variant: str


def gini_variance(labels: np.ndarray, axis: int = -1) -> np.ndarray:
    """Variance of a categorical code: (n^2 - sum_c count_c^2) / (2 n (n - 1)), the probability-of-disagreement
    half of FactorVAE's appendix (for 0/1 codes it equals the unbiased variance)."""
    lab = np.asarray(labels)
    n = lab.shape[axis]
    lab = np.moveaxis(lab, axis, -1)
    _, inv = np.unique(lab, return_inverse=True)
    inv = inv.reshape(lab.shape)
    k = int(inv.max()) + 1 if inv.size else 1
    counts = np.stack([(inv == c).sum(axis=-1) for c in range(k)], axis=-1)
    return (n * n - (counts.astype(np.float64) ** 2).sum(axis=-1)) / (2.0 * n * (n - 1))


def _factor_batch(rng, factor_sizes, k, batch_size):
    sizes = np.asarray(factor_sizes)
    cls = np.stack([rng.integers(0, s, size=batch_size) for s in sizes], axis=1)
    cls[:, k] = rng.integers(0, sizes[k])
    return cls


def _factor_vae_iv(factor_sizes, variant, n_votes, batch_size, n_global):
    sizes = tuple(int(s) for s in factor_sizes)
    if len(sizes) < 1 or min(sizes) < 2:
        raise ValueError(f"`factor_sizes` must list factors with at least 2 values each; got {factor_sizes}")
    if variant not in ("original", "dlib"):
        raise ValueError(f"`variant` must be 'original' or 'dlib'; got {variant!r}")
    if n_votes < len(sizes):
        raise ValueError(f"`n_votes` must be at least the number of factors {len(sizes)}; got {n_votes}")
    if batch_size < 2 or n_global < 2:
        raise ValueError(f"`batch_size` and `n_global` must be at least 2; got {batch_size} and {n_global}")
    return sizes


def factor_vae_score(
    represent: Represent,
    factor_sizes,
    *,
    active: np.ndarray | None = None,
    variant: Literal["original", "dlib"] = "original",
    n_votes: int | None = None,
    n_eval_votes: int | None = None,
    batch_size: int | None = None,
    n_global: int = 10_000,
    prune_std: float = 0.05,
    skip_constant_discrete: bool = True,
    seed: int = 0,
) -> FactorVAEScore:
    """FactorVAE disentanglement score by majority vote.

    For a vote on factor k: fix k at a random value v, draw ``batch_size`` factor vectors with the other factors
    uniform, represent them, and give the vote to

    .. math::  \\arg\\min_{j\\ \\mathrm{active}} \\operatorname{Var}_{\\mathrm{batch}}(z_j) / \\operatorname{Var}(z_j)

    (unbiased variances; the global one from ``n_global`` uniform factor vectors, +1e-10). A discrete code counts as
    one more dimension with :func:`gini_variance` in place of the variance. Each dimension is then mapped to the
    factor that received most of its votes; accuracy = (sum over dimensions of its majority count) / votes.

    ``variant="original"`` (the CascadeVAE code, spec §5.1): ``n_votes`` = 800 votes of ``batch_size`` = 100, looping
    over the factors in turn; ``active`` marks the continuous dimensions that take part (the caller's rule: mean
    KL > 0.1 nats); the score is the train accuracy; with no active dimension and no discrete code it is 1/F.
    ``variant="dlib"`` (disentanglement_lib): factor of each vote drawn at random, ``batch_size`` = 64, classifier
    from ``n_votes`` = 10,000 votes, score = accuracy on ``n_eval_votes`` = 5,000 fresh votes; dimensions with global
    std < ``prune_std`` are pruned unless ``active`` is given.

    Parameters
    ----------
    represent : callable, (n, F) int factor classes -> (codes (n, m) float, discrete (n,) int or None).
    factor_sizes : sequence of F ints, the number of values of each factor.
    skip_constant_discrete : bool
        A discrete code that takes a single value over the ``n_global`` sample (a collapsed latent) is left out of
        the vote. The original counts it, and since its ratio is 0 / (0 + 1e-10) = 0 it then wins every vote and the
        score is 1/F whatever the continuous code; pass False for that behaviour.

    Notes
    -----
    Cost: (n_global + votes * batch_size) representations, plus O(votes * m) NumPy work. Deterministic in ``seed``.
    The global variance is estimated from ``n_global`` uniform samples rather than the whole data set.
    """
    sizes = _factor_vae_iv(factor_sizes, variant, n_votes if n_votes is not None else 800, batch_size or 64, n_global)
    n_factors = len(sizes)
    if variant == "original":
        n_votes, batch_size = n_votes or 800, batch_size or 100
    else:
        n_votes, batch_size, n_eval_votes = n_votes or 10_000, batch_size or 64, n_eval_votes or 5_000
    rng = np.random.default_rng(seed)
    glob_cls = np.stack([rng.integers(0, s, size=n_global) for s in sizes], axis=1)
    codes, disc = represent(glob_cls)
    codes = np.asarray(codes, dtype=np.float64).reshape(n_global, -1)
    m = codes.shape[1]
    global_var = codes.var(axis=0, ddof=1) if m else np.zeros(0)
    if active is None:
        active = np.sqrt(global_var) >= prune_std if variant == "dlib" else np.ones(m, dtype=bool)
    active = np.asarray(active, dtype=bool)
    if active.shape != (m,):
        raise ValueError(f"`active` must have shape ({m},), one flag per continuous dimension; got {active.shape}")
    has_disc = disc is not None
    if has_disc:
        g = gini_variance(np.asarray(disc))
        global_var = np.append(global_var, g)
        active = np.append(active, g > 0 or not skip_constant_discrete)
    n_dims = active.shape[0]

    def cast_votes(count, cyclic):
        out = np.zeros((n_dims, n_factors), dtype=np.int64)
        if not active.any():
            return out
        for v in range(count):
            k = v % n_factors if cyclic else int(rng.integers(n_factors))
            cls = _factor_batch(rng, sizes, k, batch_size)
            z, dd = represent(cls)
            local = np.asarray(z, dtype=np.float64).reshape(batch_size, -1).var(axis=0, ddof=1)
            if has_disc:
                local = np.append(local, gini_variance(np.asarray(dd)))
            ratio = np.where(active, local / (global_var + 1e-10), np.inf)
            out[int(np.argmin(ratio)), k] += 1
        return out

    if not active.any():
        empty = np.zeros((n_dims, n_factors), dtype=np.int64)
        return FactorVAEScore(
            1.0 / n_factors, 1.0 / n_factors, None if variant == "original" else 1.0 / n_factors, empty, active, variant
        )
    train_votes = cast_votes(n_votes, cyclic=variant == "original")
    train_acc = float(train_votes.max(axis=1).sum() / n_votes)
    if variant == "original":
        return FactorVAEScore(train_acc, train_acc, None, train_votes, active, variant)
    classifier = train_votes.argmax(axis=1)
    eval_votes = cast_votes(n_eval_votes, cyclic=False)
    eval_acc = float(eval_votes[np.arange(n_dims), classifier].sum() / n_eval_votes)
    return FactorVAEScore(eval_acc, train_acc, eval_acc, train_votes, active, variant)


def classification_accuracy(predicted, labels) -> float:
    """Accuracy of ``predicted`` categories as a classifier of ``labels`` after the best one-to-one matching of
    categories to classes (Hungarian on the confusion matrix, scipy ``linear_sum_assignment``).

    .. math::  \\max_{\\pi\\ \\mathrm{injective}} \\frac1n \\sum_i [\\pi(\\hat c_i) = y_i]

    Categories left unmatched (more categories than classes) count as errors. O(n + K^3) for K categories/classes.
    """
    pred, lab = np.asarray(predicted), np.asarray(labels)
    if pred.shape != lab.shape or pred.ndim != 1:
        raise ValueError(f"`predicted` and `labels` must be 1-d of equal length; got {pred.shape} and {lab.shape}")
    if pred.size == 0:
        raise ValueError("`predicted` must not be empty")
    _, p = np.unique(pred, return_inverse=True)
    _, y = np.unique(lab, return_inverse=True)
    confusion = np.zeros((p.max() + 1, y.max() + 1), dtype=np.int64)
    np.add.at(confusion, (p, y), 1)
    rows, cols = linear_sum_assignment(confusion, maximize=True)
    return float(confusion[rows, cols].sum() / pred.size)


def dsprites_represent(encode, dataset, *, active=None):
    """The ``represent`` callable for dSprites' 5 varying factors (shape, scale, orientation, posX, posY).

    ``encode`` is ``images (n, H, W) -> Encoded`` (:func:`combax.adapters.vae.make_encoder`); colour is fixed at its
    single value. Returns ``represent(classes (n, 5)) -> (mu[:, active] or mu, category or None)``.
    """

    def represent(classes5):
        cls = np.concatenate([np.zeros((len(classes5), 1), dtype=np.int64), np.asarray(classes5)], axis=1)
        enc = encode(dataset.render(cls))
        return enc.mu, enc.category

    return represent


DSPRITES_FACTOR_SIZES = (3, 6, 40, 32, 32)
