"""Metric-learning losses, plain (metric stage) and masked by hash codes (hash stage), after ``specs/hash_flow.md`` §2.

Masked losses take a code matrix ``codes`` (B, d) of 0/1 values, one row per sample (the class code copied onto each
of its samples), and restrict distances or similarities to the union of the two codes' active buckets,
m_ij = h_i OR h_j. The codes are constants: gradients flow only through the activations (no relaxation, no
straight-through estimator), as in the papers.

References
----------
Jeong & Song, "Efficient end-to-end learning for quantizable representations", ICML 2018, arXiv:1805.05809.
Schroff et al., "FaceNet", CVPR 2015 (semi-hard triplets). Sohn, "Improved deep metric learning with multi-class
N-pair loss objective", NeurIPS 2016.
"""

import jax
import jax.numpy as jnp

__all__ = [
    "l2_normalize",
    "pairwise_sq_distances",
    "masked_l1_distances",
    "semihard_triplet_from_distances",
    "triplet_loss",
    "masked_triplet_loss",
    "npairs_loss",
    "masked_npairs_loss",
]


def l2_normalize(f, eps: float = 1e-12):
    """Rows of ``f`` scaled to unit Euclidean norm."""
    return f / jnp.sqrt(jnp.maximum(jnp.sum(f * f, axis=-1, keepdims=True), eps))


def pairwise_sq_distances(f):
    r"""D_ij = ||f_i - f_j||^2, clipped at 0, for f of shape (B, m). O(B^2 m)."""
    sq = jnp.sum(f * f, axis=1)
    return jnp.maximum(sq[:, None] + sq[None, :] - 2.0 * f @ f.T, 0.0)


def masked_l1_distances(f, codes):
    r"""The masked L1 distance of paper A's triplet loss.

    .. math:: D_{ij} = \sum_r (h_i \vee h_j)_r \, |f_{ir} - f_{jr}|

    ``f`` (B, d) activations, ``codes`` (B, d) 0/1. Time and memory O(B^2 d).
    """
    h = codes.astype(f.dtype)
    union = jnp.maximum(h[:, None, :], h[None, :, :])
    return jnp.sum(union * jnp.abs(f[:, None, :] - f[None, :, :]), axis=-1)


def semihard_triplet_from_distances(D, labels, margin: float):
    r"""Semi-hard triplet loss on a precomputed distance matrix (TF-contrib ``triplet_semihard_loss`` semantics).

    For each positive pair (a, p), a != p, with distance D_ap, the negative distance is the smallest D_an with
    D_an > D_ap (a semi-hard negative); when no negative is farther than the positive it is the *largest* D_an over
    negatives, exactly as TF-contrib's ``masked_maximum`` fallback does (the original implementations use it).

    .. math:: L = \frac{1}{|P|} \sum_{(a,p) \in P} [D_{ap} - D_{an(a,p)} + \alpha]_+

    Time and memory O(B^3) (B = batch size). Returns 0 when the batch has no positive pair.
    """
    labels = jnp.asarray(labels)
    B = D.shape[0]
    same = labels[:, None] == labels[None, :]
    positive = same & ~jnp.eye(B, dtype=bool)
    negative = ~same
    # beyond[a, p, n]: n is a negative of a that is farther from a than p is
    beyond = negative[:, None, :] & (D[:, None, :] > D[:, :, None])
    big = jnp.asarray(jnp.finfo(D.dtype).max, D.dtype)
    semihard = jnp.min(jnp.where(beyond, D[:, None, :], big), axis=-1)  # (a, p)
    hardest_inside = jnp.max(jnp.where(negative, D, -big), axis=-1)  # (a,)
    neg = jnp.where(jnp.any(beyond, axis=-1), semihard, hardest_inside[:, None])
    neg = jnp.where(jnp.any(negative, axis=-1)[:, None], neg, D)  # no negatives at all: the triplet term is margin
    per_pair = jnp.maximum(D - neg + margin, 0.0)
    n_pos = jnp.sum(positive)
    return jnp.sum(jnp.where(positive, per_pair, 0.0)) / jnp.maximum(n_pos, 1)


def triplet_loss(embeddings, labels, margin: float = 1.0):
    """Metric-stage semi-hard triplet loss: squared Euclidean distances between L2-normalised embeddings."""
    return semihard_triplet_from_distances(pairwise_sq_distances(l2_normalize(embeddings)), labels, margin)


def masked_triplet_loss(activations, codes, labels, margin: float = 1.0):
    """Hash-stage triplet loss of paper A: semi-hard triplets on the masked L1 distance of L2-normalised activations.

    ``activations`` (B, d) hash-head outputs, ``codes`` (B, d) 0/1 constants (gradient is stopped), ``labels`` (B,).
    """
    f = l2_normalize(activations)
    return semihard_triplet_from_distances(masked_l1_distances(f, jax.lax.stop_gradient(codes)), labels, margin)


def _npairs_from_similarity(S, labels, anchor, positive, reg):
    same = (labels[:, None] == labels[None, :]).astype(S.dtype)
    target = same / jnp.sum(same, axis=1, keepdims=True)
    xent = -jnp.mean(jnp.sum(target * jax.nn.log_softmax(S, axis=1), axis=1))
    l2 = jnp.mean(jnp.sum(anchor * anchor, axis=1)) + jnp.mean(jnp.sum(positive * positive, axis=1))
    return xent + 0.25 * reg * l2


def npairs_loss(anchor, positive, labels, reg: float = 0.003):
    r"""Metric-stage N-pairs loss: softmax cross-entropy of S = anchor positive^T against "same label" targets.

    .. math:: L = -\frac{1}{B}\sum_i \sum_j t_{ij} \log \mathrm{softmax}(S_{i\cdot})_j
              + \tfrac{\lambda_{reg}}{4}(\overline{\|a\|^2} + \overline{\|p\|^2}),\quad t_{ij} \propto [y_i = y_j]

    ``anchor``, ``positive`` (B, m); ``labels`` (B,). O(B^2 m).
    """
    return _npairs_from_similarity(anchor @ positive.T, jnp.asarray(labels), anchor, positive, reg)


def masked_npairs_loss(anchor, positive, codes, labels, reg: float = 0.003):
    r"""Hash-stage N-pairs loss of paper A with the masked inner product (``h1`` similarity).

    .. math:: S_{ij} = \sum_r (h_i \vee h_j)_r \, a_{ir} p_{jr}

    ``codes`` (B, d) are the pair's class codes (anchor i and positive i share one). O(B^2 d).
    """
    h = jax.lax.stop_gradient(codes).astype(anchor.dtype)
    union = jnp.maximum(h[:, None, :], h[None, :, :])
    S = jnp.sum(union * anchor[:, None, :] * positive[None, :, :], axis=-1)
    return _npairs_from_similarity(S, jnp.asarray(labels), anchor, positive, reg)
