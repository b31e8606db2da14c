"""Baselines of ``specs/hash_flow.md`` §3.6 and §6.1 in the same evaluation as the learned tables.

* :func:`linear_scan` - exact top-K by Euclidean distance over the whole database (SUF = 1).
* :class:`ThresholdIndex` - Th: bucket = top-k coordinates of the metric embedding itself.
* :class:`VQIndex` - k-means VQ with multi-assignment: each item in its k nearest centroids, queries probe their k
  nearest (IVF-Flat with nlist clusters and nprobe = k; the spec's baseline uses nlist = d).
* :class:`FaissIVF` - FAISS ``IndexIVFFlat`` (extra ``faiss``), nlist lists, nprobe probes.
* :func:`at_matched_suf` - pick nlist so that a baseline's SUF is as close as possible to a target SUF.

Every baseline answers ``query(q_emb, K, exclude=None) -> QueryResult`` and exposes ``keys`` ((N, k) bucket keys of
the database items) for NMI.
"""

from dataclasses import dataclass

import numpy as np

from combax._optional import require

from .hash_index import HashIndex, QueryResult

__all__ = ["linear_scan", "ThresholdIndex", "VQIndex", "FaissIVF", "at_matched_suf"]


def _emb(x, name):
    a = np.ascontiguousarray(x, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"`{name}` must be (n, m); got shape {a.shape}")
    return a


def _sq_dist(a, b):
    return np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T, 0.0)


def linear_scan(db_emb, q_emb, K: int, *, exclude=None) -> QueryResult:
    """Exact top-K by squared Euclidean distance (ties: smaller index first). O(n_q N m)."""
    db, q = _emb(db_emb, "db_emb"), _emb(q_emb, "q_emb")
    D = _sq_dist(q, db)
    n_db = db.shape[0]
    if exclude is not None:
        ex = np.asarray(exclude, dtype=np.int64)
        rows = np.flatnonzero(ex >= 0)
        D[rows, ex[rows]] = np.inf
        n_db -= 1
    idx = np.argsort(D, axis=1, kind="stable")[:, :K]
    return QueryResult(idx.astype(np.int64), np.full(q.shape[0], n_db, dtype=np.int64), n_db)


@dataclass(frozen=True, slots=True)
class ThresholdIndex:
    """Th: each item sits in the buckets of its top-k embedding coordinates; re-ranking by the same embedding."""

    index: HashIndex

    @classmethod
    def build(cls, db_emb, k: int) -> "ThresholdIndex":
        db = _emb(db_emb, "db_emb")
        return cls(HashIndex.build(db, db, k))

    @property
    def keys(self):
        return self.index.keys

    def query(self, q_emb, K: int, *, exclude=None) -> QueryResult:
        q = _emb(q_emb, "q_emb")
        return self.index.query(q, q, K, exclude=exclude)


@dataclass(frozen=True, slots=True)
class VQIndex:
    """k-means VQ with multi-assignment (items in their k nearest centroids; queries probe their k nearest)."""

    centroids: np.ndarray
    index: HashIndex

    @classmethod
    def build(cls, db_emb, n_clusters: int, k: int, *, seed: int = 0) -> "VQIndex":
        from sklearn.cluster import KMeans

        db = _emb(db_emb, "db_emb")
        if not 1 <= k <= n_clusters <= db.shape[0]:
            raise ValueError(f"need 1 <= `k` <= `n_clusters` <= N = {db.shape[0]}; got k={k}, n_clusters={n_clusters}")
        km = KMeans(n_clusters=n_clusters, n_init=1, random_state=seed).fit(db)
        centroids = km.cluster_centers_.astype(np.float64)
        return cls(centroids, HashIndex.build(-_sq_dist(db, centroids), db, k))

    @property
    def keys(self):
        return self.index.keys

    def query(self, q_emb, K: int, *, exclude=None) -> QueryResult:
        q = _emb(q_emb, "q_emb")
        return self.index.query(-_sq_dist(q, self.centroids), q, K, exclude=exclude)


@dataclass(frozen=True, slots=True)
class FaissIVF:
    """FAISS ``IndexIVFFlat`` with an L2 k-means coarse quantizer (nlist lists, nprobe probed per query)."""

    index: object
    nprobe: int
    keys: np.ndarray
    n_items: int

    @classmethod
    def build(cls, db_emb, nlist: int, nprobe: int = 1, *, seed: int = 0) -> "FaissIVF":
        faiss = require("faiss", "faiss", "the FAISS IVF baseline")
        db = np.ascontiguousarray(_emb(db_emb, "db_emb"), dtype=np.float32)
        if not 1 <= nprobe <= nlist <= db.shape[0]:
            raise ValueError(f"need 1 <= `nprobe` <= `nlist` <= N = {db.shape[0]}; got {nprobe}, {nlist}")
        quantizer = faiss.IndexFlatL2(db.shape[1])
        index = faiss.IndexIVFFlat(quantizer, db.shape[1], nlist)
        index.cp.seed = seed
        index.cp.min_points_per_centroid = 1  # small databases: silence the "too few points" warning
        index.train(db)
        index.add(db)
        index.nprobe = nprobe
        _, lists = quantizer.search(db, 1)
        return cls(index, nprobe, lists.astype(np.int64), db.shape[0])

    def query(self, q_emb, K: int, *, exclude=None) -> QueryResult:
        if exclude is not None:
            raise ValueError("`exclude` is not supported by the FAISS baseline (use test-to-train retrieval)")
        q = np.ascontiguousarray(_emb(q_emb, "q_emb"), dtype=np.float32)
        _, idx = self.index.search(q, K)
        _, probed = self.index.quantizer.search(q, self.nprobe)
        sizes = np.array([self.index.invlists.list_size(i) for i in range(self.index.nlist)], dtype=np.int64)
        n_cand = np.where(probed >= 0, sizes[np.maximum(probed, 0)], 0).sum(1)
        return QueryResult(idx.astype(np.int64), n_cand.astype(np.int64), self.n_items)


def at_matched_suf(build, q_emb, target_suf: float, K: int, nlists) -> tuple[object, QueryResult]:
    """Among ``build(nlist)`` for ``nlist`` in ``nlists``, the baseline whose measured SUF (at top-K) is nearest to
    ``target_suf`` in log scale. Returns (baseline, its QueryResult). Only SUF is used to choose, never precision."""
    best = None
    for nlist in nlists:
        b = build(int(nlist))
        r = b.query(q_emb, K)
        gap = abs(np.log(r.speedup) - np.log(target_suf))
        if best is None or gap < best[0]:
            best = (gap, b, r)
    return best[1], best[2]
