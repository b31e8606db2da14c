"""Retrieval metrics of ``specs/hash_flow.md`` §3.3-3.4: precision@K, recall@K, NMI of a hash table, and SUF."""

import numpy as np

__all__ = ["precision_at", "recall_at", "nmi", "suf"]


def _retrieved_labels(retrieved, db_labels, q_labels, K):
    retrieved = np.asarray(retrieved)
    db_labels = np.asarray(db_labels)
    q_labels = np.asarray(q_labels)
    if retrieved.ndim != 2:
        raise ValueError(f"`retrieved` must be (n_queries, K_max) database indices; got shape {retrieved.shape}")
    if q_labels.shape != (retrieved.shape[0],):
        raise ValueError(f"`q_labels` must have shape ({retrieved.shape[0]},); got {q_labels.shape}")
    if not 1 <= K <= retrieved.shape[1]:
        raise ValueError(f"`K` must lie in 1..{retrieved.shape[1]} (the columns of `retrieved`); got {K}")
    top = retrieved[:, :K]
    valid = top >= 0  # -1 pads queries that got fewer than K results; they count as misses
    return np.where(valid, db_labels[np.where(valid, top, 0)], -1) == q_labels[:, None]


def precision_at(retrieved, db_labels, q_labels, K: int) -> float:
    r"""precision@K = (1 / (n_q K)) \sum_q |{same-label items among the first K retrieved}|.

    ``retrieved`` (n_q, K_max) int database indices in rank order, -1 for missing results (counted as wrong).
    """
    hits = _retrieved_labels(retrieved, db_labels, q_labels, K)
    return float(hits.mean()) if hits.size else 0.0


def recall_at(retrieved, db_labels, q_labels, K: int) -> float:
    """The original code's "recall@K": the fraction of queries with at least one same-label item in the first K."""
    hits = _retrieved_labels(retrieved, db_labels, q_labels, K)
    return float(hits.any(axis=1).mean()) if hits.size else 0.0


def nmi(keys, labels) -> float:
    r"""Normalised mutual information between hash buckets and labels, log base 2.

    .. math:: \mathrm{NMI} = \frac{I(C; Y)}{(H(C) + H(Y)) / 2}

    ``keys`` (N, k) int bucket keys of each database item (each item counts once per bucket it occupies), or (N,).
    ``labels`` (N,) int. Returns 0 when both entropies vanish. O(N k log(N k)).
    """
    keys = np.asarray(keys)
    if keys.ndim == 1:
        keys = keys[:, None]
    labels = np.asarray(labels)
    if keys.ndim != 2 or labels.shape != (keys.shape[0],):
        raise ValueError(f"`keys` must be (N, k) and `labels` (N,); got {keys.shape} and {labels.shape}")
    c = keys.ravel()
    y = np.repeat(labels, keys.shape[1])
    _, ci = np.unique(c, return_inverse=True)
    _, yi = np.unique(y, return_inverse=True)
    joint = np.zeros((ci.max() + 1, yi.max() + 1))
    np.add.at(joint, (ci, yi), 1.0)
    p = joint / joint.sum()
    pc, py = p.sum(1), p.sum(0)
    nz = p > 0
    mi = float(np.sum(p[nz] * np.log2(p[nz] / np.outer(pc, py)[nz])))
    hc = -float(np.sum(pc[pc > 0] * np.log2(pc[pc > 0])))
    hy = -float(np.sum(py[py > 0] * np.log2(py[py > 0])))
    return 0.0 if hc + hy == 0 else 2.0 * mi / (hc + hy)


def suf(n_candidates, n_database: int) -> float:
    """Speed-up factor: 1 / mean over queries of |candidates| / N (a count of distance computations, not time)."""
    n_candidates = np.asarray(n_candidates, dtype=np.float64)
    if n_database < 1:
        raise ValueError(f"`n_database` must be positive; got {n_database}")
    frac = float(np.mean(n_candidates / n_database)) if n_candidates.size else 0.0
    return float("inf") if frac == 0.0 else 1.0 / frac
