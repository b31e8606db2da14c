"""HashIndex against a plain-Python reading of the search protocol, plus metrics and baselines against oracles."""

import itertools
import re

import numpy as np
import pytest

from combax.adapters.hash_baselines import FaissIVF, ThresholdIndex, VQIndex, at_matched_suf, linear_scan
from combax.adapters.hash_index import HashIndex, bucket_keys
from combax.adapters.retrieval_metrics import nmi, precision_at, recall_at, suf


def _brute_query(db_act, db_emb, q_act, q_emb, k, K, d, levels, exclude=None):
    """The spec's protocol, written out literally: keys of the database, ranked keys of the query, expansion."""
    keys = bucket_keys(db_act, k, d, levels)
    table = {}
    for i, row in enumerate(keys):
        for key in row:
            table.setdefault(int(key), set()).add(i)
    out_idx, out_n = [], []
    for q in range(q_act.shape[0]):
        per_level = [sorted(range(d), key=lambda r, v=v: (-q_act[q, v * d + r], r)) for v in range(levels)]
        ranked = [
            sum(per_level[v][t[v]] * d ** (levels - 1 - v) for v in range(levels))
            for t in itertools.product(range(d), repeat=levels)  # last level changes fastest
        ]
        cand, t = set(), 0
        while t < len(ranked) and (t < k or len(cand) < K):
            cand |= table.get(ranked[t], set()) - ({exclude[q]} if exclude is not None else set())
            t += 1
        dist = sorted((float(((db_emb[i] - q_emb[q]) ** 2).sum()), i) for i in cand)
        idx = [i for _, i in dist[:K]]
        out_idx.append(idx + [-1] * (K - len(idx)))
        out_n.append(len(cand))
    return np.array(out_idx), np.array(out_n)


@pytest.mark.parametrize(
    ("levels", "d", "k", "K"), [(1, 6, 1, 1), (1, 6, 2, 4), (1, 5, 3, 16), (2, 3, 1, 4), (2, 4, 2, 16)]
)
@pytest.mark.parametrize("seed", range(3))
def test_query_matches_protocol(levels, d, k, K, seed):
    rng = np.random.default_rng(seed)
    db_act, db_emb = rng.normal(size=(40, levels * d)), rng.normal(size=(40, 3))
    q_act, q_emb = rng.normal(size=(9, levels * d)), rng.normal(size=(9, 3))
    index = HashIndex.build(db_act, db_emb, k, levels=levels)
    res = index.query(q_act, q_emb, K)
    idx, n = _brute_query(db_act, db_emb, q_act, q_emb, k, K, d, levels)
    np.testing.assert_array_equal(res.indices, idx)
    np.testing.assert_array_equal(res.n_candidates, n)
    assert np.all(res.n_candidates >= min(K, 40)), "expansion reaches K candidates"


def test_query_with_all_buckets_is_linear_scan_and_self_exclusion():
    rng = np.random.default_rng(7)
    act, emb = rng.normal(size=(30, 4)), rng.normal(size=(30, 5))
    index = HashIndex.build(act, emb, 4)  # k = d: every item is in every bucket
    res = index.query(act, emb, 5, exclude=np.arange(30))
    ref = linear_scan(emb, emb, 5, exclude=np.arange(30))
    np.testing.assert_array_equal(res.indices, ref.indices)
    assert res.speedup == pytest.approx(1.0) and ref.speedup == pytest.approx(1.0)
    assert not np.any(res.indices == np.arange(30)[:, None])
    idx, _ = _brute_query(act, emb, act, emb, 4, 5, 4, 1, exclude=np.arange(30))
    np.testing.assert_array_equal(res.indices, idx)


def test_quick_suf_equals_candidate_suf_for_k1_database_queries():
    rng = np.random.default_rng(8)
    act, emb = rng.normal(size=(200, 8)), rng.normal(size=(200, 2))
    index = HashIndex.build(act, emb, 1)
    res = index.query(act, emb, 1)  # own bucket is never empty, so no expansion
    assert index.speedup(res) == pytest.approx(index.speedup(), rel=1e-12)
    assert index.loads().sum() == 200


def test_linear_scan_matches_numpy_argsort():
    rng = np.random.default_rng(9)
    db, q = rng.normal(size=(50, 4)), rng.normal(size=(6, 4))
    D = ((q[:, None] - db[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(linear_scan(db, q, 7).indices, np.argsort(D, axis=1, kind="stable")[:, :7])


def test_save_load_roundtrip(tmp_path):
    rng = np.random.default_rng(10)
    index = HashIndex.build(rng.normal(size=(25, 8)), rng.normal(size=(25, 3)), 2, levels=2)
    index.save(tmp_path / "t.npz")
    back = HashIndex.load(tmp_path / "t.npz")
    assert (back.d, back.levels, back.k) == (4, 2, 2)
    q_act, q_emb = rng.normal(size=(5, 8)), rng.normal(size=(5, 3))
    np.testing.assert_array_equal(back.query(q_act, q_emb, 4).indices, index.query(q_act, q_emb, 4).indices)


def test_compound_keys():
    act = np.array([[0.0, 5.0, 1.0, 0.0, 3.0, 2.0]])  # d = 3, levels = 2: parent 1, children ranked 1, 2, 0
    np.testing.assert_array_equal(bucket_keys(act, 2, 3, 2), [[1 * 3 + 1, 1 * 3 + 2]])


@pytest.mark.parametrize(
    ("call", "msg"),
    [
        (lambda: HashIndex.build(np.zeros((3, 4)), np.zeros((3, 2)), 5), "`k` must lie in 1..d = 1..4; got 5"),
        (lambda: HashIndex.build(np.zeros((3, 5)), np.zeros((3, 2)), 1, levels=2), "`levels` must divide"),
        (lambda: HashIndex.build(np.zeros((3, 4)), np.zeros((2, 2)), 1), "`embeddings` must have 3 rows"),
        (lambda: HashIndex.build(np.full((3, 4), np.nan), np.zeros((3, 2)), 1), "`activations` must be finite"),
    ],
)
def test_build_errors(call, msg):
    with pytest.raises(ValueError, match=re.escape(msg)):
        call()


def test_query_errors():
    index = HashIndex.build(np.zeros((3, 4)), np.zeros((3, 2)), 1)
    with pytest.raises(ValueError, match=re.escape("`activations` must have 4 columns; got 3")):
        index.query(np.zeros((2, 3)), np.zeros((2, 2)), 1)
    with pytest.raises(ValueError, match=re.escape("`K` must be a positive integer; got 0")):
        index.query(np.zeros((2, 4)), np.zeros((2, 2)), 0)


# ------------------------------------------------------------------------------------------ metrics


def test_precision_and_recall_by_hand():
    db_labels = np.array([0, 0, 1, 1])
    retrieved = np.array([[0, 2, 1], [3, -1, -1]])
    q = np.array([0, 0])
    assert precision_at(retrieved, db_labels, q, 1) == pytest.approx(0.5)
    assert precision_at(retrieved, db_labels, q, 3) == pytest.approx(2 / 6)
    assert recall_at(retrieved, db_labels, q, 1) == pytest.approx(0.5)
    assert recall_at(retrieved, db_labels, q, 3) == pytest.approx(0.5)
    with pytest.raises(ValueError, match=re.escape("`K` must lie in 1..3 (the columns of `retrieved`); got 4")):
        precision_at(retrieved, db_labels, q, 4)


def test_nmi_matches_sklearn_for_single_keys():
    sklearn_metrics = pytest.importorskip("sklearn.metrics", reason="the NMI oracle is scikit-learn")
    rng = np.random.default_rng(11)
    keys, labels = rng.integers(0, 7, 300), rng.integers(0, 4, 300)
    expected = sklearn_metrics.normalized_mutual_info_score(labels, keys, average_method="arithmetic")
    assert nmi(keys, labels) == pytest.approx(expected, rel=1e-9)
    assert nmi(np.arange(10) % 3, np.arange(10) % 3) == pytest.approx(1.0)


def test_suf():
    assert suf([10, 30], 40) == pytest.approx(2.0)


# ------------------------------------------------------------------------------------------ baselines


def test_threshold_index_uses_embedding_coordinates():
    rng = np.random.default_rng(12)
    db, q = rng.normal(size=(60, 6)), rng.normal(size=(5, 6))
    th = ThresholdIndex.build(db, 2)
    np.testing.assert_array_equal(th.keys, bucket_keys(db, 2, 6))
    idx, n = _brute_query(db, db, q, q, 2, 4, 6, 1)
    res = th.query(q, 4)
    np.testing.assert_array_equal(res.indices, idx)
    np.testing.assert_array_equal(res.n_candidates, n)


def test_vq_single_cluster_is_linear_scan():
    rng = np.random.default_rng(13)
    db, q = rng.normal(size=(40, 3)), rng.normal(size=(6, 3))
    vq = VQIndex.build(db, 1, 1)
    res = vq.query(q, 5)
    np.testing.assert_array_equal(res.indices, linear_scan(db, q, 5).indices)
    assert res.speedup == pytest.approx(1.0)
    many = VQIndex.build(db, 8, 2, seed=0)
    assert many.query(q, 1).speedup > 1.0


def test_faiss_ivf_probing_every_list_is_exact():
    pytest.importorskip("faiss", reason="the FAISS baseline needs the `faiss` extra")
    rng = np.random.default_rng(14)
    db, q = rng.normal(size=(200, 4)).astype(np.float32), rng.normal(size=(10, 4)).astype(np.float32)
    ivf = FaissIVF.build(db, nlist=4, nprobe=4)
    res = ivf.query(q, 3)
    np.testing.assert_array_equal(res.indices, linear_scan(db, q, 3).indices)
    assert res.speedup == pytest.approx(1.0)
    one = FaissIVF.build(db, nlist=4, nprobe=1)
    assert one.query(q, 3).speedup > 1.5
    chosen, r = at_matched_suf(lambda n: FaissIVF.build(db, nlist=n, nprobe=1), q, 4.0, 1, [1, 2, 4, 8])
    assert abs(np.log(r.speedup / 4.0)) <= abs(np.log(ivf.query(q, 1).speedup / 4.0))
