"""A searchable sparse hash table (``specs/hash_flow.md`` §3): build, query with expansion and exact re-ranking, SUF.

Every database item is stored under k bucket keys: the top-k coordinates of its hash activations (paper A, flat
codes, ``levels=1``), or its s compound keys (paper B, ``levels=K``: argmax at levels 1..K-1, top-s at level K,
key = i_1 d^{K-1} + ... + i_K). A query ranks bucket keys by its own activations, takes the union of the items in its
first k keys, keeps adding the next-ranked key while the union has fewer than K items, and re-ranks the union by exact
Euclidean distance in the metric-embedding space.

The same class serves the thresholding (Th) and k-means (VQ) baselines: pass the embedding itself, or minus the
distances to the centroids, as "activations" (see :mod:`combax.adapters.hash_baselines`).
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numba import njit

from .retrieval_metrics import suf

__all__ = ["HashIndex", "QueryResult", "bucket_keys", "rank_buckets"]


@dataclass(frozen=True, slots=True)
class QueryResult:
    """Answer of :meth:`HashIndex.query`.

    Attributes
    ----------
    indices : (n_q, K) int64 database indices, nearest first; -1 where fewer than K candidates existed.
    n_candidates : (n_q,) int64 size of each query's candidate set (distance computations).
    n_database : N, or N - 1 when queries were excluded from their own results (the SRR denominator).
    """

    indices: np.ndarray
    n_candidates: np.ndarray
    n_database: int

    @property
    def speedup(self) -> float:
        """SUF = 1 / mean_q(|candidates_q| / N)."""
        return suf(self.n_candidates, self.n_database)


def rank_buckets(activations, d: int, levels: int = 1) -> np.ndarray:
    """Per-level bucket ranking: (n, levels, d) int64, best bucket first; ties go to the smaller bucket index."""
    a = np.asarray(activations, dtype=np.float64).reshape(-1, levels, d)
    return np.argsort(-a, axis=-1, kind="stable").astype(np.int64)


def bucket_keys(activations, k: int, d: int, levels: int = 1) -> np.ndarray:
    """The k bucket keys of each row: (n, k) int64.

    Flat (``levels=1``): the top-k coordinates (index-stable top-k). Compound: the argmax of each level before the last
    gives the parent path p = sum_v i_v d^{K-1-v}; the keys are p d + (top-k of the last level).
    """
    ranks = rank_buckets(activations, d, levels)
    parent = np.zeros(ranks.shape[0], dtype=np.int64)
    for v in range(levels - 1):
        parent = parent * d + ranks[:, v, 0]
    return parent[:, None] * d + ranks[:, levels - 1, :k]


# mutates: out_idx (n_q, K), out_ncand (n_q,)
@njit(cache=True)
def _query_kernel(ranks, n_first, offsets, items, db_emb, q_emb, exclude, K, out_idx, out_ncand):
    n_q, levels, d = ranks.shape
    n_db, m = db_emb.shape
    n_keys = d**levels
    stamp = np.full(n_db, -1, dtype=np.int64)
    cand = np.empty(n_db, dtype=np.int64)
    for q in range(n_q):
        c = 0
        t = 0
        while t < n_keys and (t < n_first or c < K):
            key = 0
            rem = t
            scale = 1
            for v in range(levels - 1, -1, -1):  # the last level changes fastest
                key += ranks[q, v, rem % d] * scale
                rem //= d
                scale *= d
            for j in range(offsets[key], offsets[key + 1]):
                it = items[j]
                if stamp[it] != q and it != exclude[q]:
                    stamp[it] = q
                    cand[c] = it
                    c += 1
            t += 1
        out_ncand[q] = c
        sel = np.sort(cand[:c])  # ties in distance go to the smaller database index (stable sort below)
        dist = np.empty(c, dtype=np.float64)
        for j in range(c):
            s = 0.0
            for r in range(m):
                diff = db_emb[sel[j], r] - q_emb[q, r]
                s += diff * diff
            dist[j] = s
        order = np.argsort(dist, kind="mergesort")
        for j in range(min(K, c)):
            out_idx[q, j] = sel[order[j]]


def _as_2d(x, name, dtype=np.float64):
    a = np.ascontiguousarray(x, dtype=dtype)
    if a.ndim != 2:
        raise ValueError(f"`{name}` must be two-dimensional; got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"`{name}` must be finite (no NaN or inf)")
    return a


@dataclass(frozen=True, slots=True)
class HashIndex:
    """A hash table over N database items with exact re-ranking.

    Attributes
    ----------
    d : buckets per level.
    levels : K (1 = flat keys in 0..d-1; K > 1 = compound keys in 0..d^K-1).
    k : keys per item (k-hot flat codes, or s at the last level).
    keys : (N, k) int64 the keys of each database item.
    offsets, items : CSR of the table: the items of key b are ``items[offsets[b]:offsets[b + 1]]`` (ascending).
    embeddings : (N, m) float64 metric embeddings used for re-ranking.
    """

    d: int
    levels: int
    k: int
    keys: np.ndarray
    offsets: np.ndarray
    items: np.ndarray
    embeddings: np.ndarray

    @classmethod
    def build(cls, activations, embeddings, k: int, *, levels: int = 1) -> "HashIndex":
        """Build the table from database hash activations (N, K d) and metric embeddings (N, m).

        O(N d log d) for the rankings plus O(N k log(N k)) for the table.
        """
        act = _as_2d(activations, "activations")
        emb = _as_2d(embeddings, "embeddings")
        if levels < 1 or act.shape[1] % levels:
            raise ValueError(f"`levels` must divide the activation width {act.shape[1]}; got {levels}")
        d = act.shape[1] // levels
        if not 1 <= k <= d:
            raise ValueError(f"`k` must lie in 1..d = 1..{d}; got {k}")
        if emb.shape[0] != act.shape[0]:
            raise ValueError(f"`embeddings` must have {act.shape[0]} rows like `activations`; got {emb.shape[0]}")
        keys = bucket_keys(act, k, d, levels)
        flat = keys.ravel()
        order = np.argsort(flat, kind="stable")
        items = (order // k).astype(np.int64)
        counts = np.bincount(flat, minlength=d**levels)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return cls(d, levels, k, keys, offsets, items, emb)

    @property
    def n_items(self) -> int:
        return int(self.keys.shape[0])

    def loads(self) -> np.ndarray:
        """(d^levels,) number of items per key."""
        return np.diff(self.offsets)

    def query(self, activations, embeddings, K: int, *, exclude=None) -> QueryResult:
        """Top-K database items for each query (paper A §3.2, paper B's base-d expansion for compound keys).

        Parameters
        ----------
        activations : (n_q, levels d) query hash activations (rank the query's buckets).
        embeddings : (n_q, m) query metric embeddings (exact re-ranking).
        K : number of results per query.
        exclude : optional (n_q,) database index to leave out of each query's results (-1 for none); pass
            ``np.arange(N)`` when the queries are the database itself (then SRR uses N - 1).

        Notes
        -----
        O(n_q (levels d log d + |candidates| m)). Ties in distance go to the smaller database index.
        """
        act = _as_2d(activations, "activations")
        emb = _as_2d(embeddings, "embeddings")
        if act.shape[1] != self.levels * self.d:
            raise ValueError(f"`activations` must have {self.levels * self.d} columns; got {act.shape[1]}")
        if emb.shape != (act.shape[0], self.embeddings.shape[1]):
            raise ValueError(
                f"`embeddings` must have shape {(act.shape[0], self.embeddings.shape[1])}; got {emb.shape}"
            )
        if K < 1:
            raise ValueError(f"`K` must be a positive integer; got {K}")
        n_db = self.n_items
        if exclude is None:
            ex = np.full(act.shape[0], -1, dtype=np.int64)
        else:
            ex = np.ascontiguousarray(exclude, dtype=np.int64)
            if ex.shape != (act.shape[0],):
                raise ValueError(f"`exclude` must have shape ({act.shape[0]},); got {ex.shape}")
            n_db -= 1
        ranks = rank_buckets(act, self.d, self.levels)
        out_idx = np.full((act.shape[0], K), -1, dtype=np.int64)
        out_ncand = np.zeros(act.shape[0], dtype=np.int64)
        _query_kernel(ranks, self.k, self.offsets, self.items, self.embeddings, emb, ex, K, out_idx, out_ncand)
        return QueryResult(out_idx, out_ncand, max(n_db, 1))

    def speedup(self, result: QueryResult | None = None) -> float:
        """SUF. With a :class:`QueryResult`: 1 / mean SRR over its queries (§3.3, the reported number). Without:
        the quick load-based SUF N^2 / sum_b load_b^2 of the training monitor (equal to the former for k = 1 and no
        fallback expansion)."""
        if result is not None:
            return result.speedup
        loads = self.loads().astype(np.float64)
        return float(self.n_items**2 / np.sum(loads**2))

    def save(self, path) -> None:
        """Write the table to ``path`` (a ``.npz`` file)."""
        np.savez_compressed(
            Path(path),
            meta=np.array([self.d, self.levels, self.k], dtype=np.int64),
            keys=self.keys,
            offsets=self.offsets,
            items=self.items,
            embeddings=self.embeddings,
        )

    @classmethod
    def load(cls, path) -> "HashIndex":
        """Read a table written by :meth:`save`."""
        with np.load(Path(path)) as z:
            d, levels, k = (int(v) for v in z["meta"])
            return cls(d, levels, k, z["keys"], z["offsets"], z["items"], z["embeddings"])
