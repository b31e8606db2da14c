"""Latency and importance tables: which entries are measured, what they mean, executors, and input validation."""

import multiprocessing
import re
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="latency tables time ONNX graphs with onnxruntime (extra `onnx`)")

from combax.adapters.tables import (  # noqa: E402
    ImportanceTable,
    LatencyTable,
    depth_problem,
    importance_table,
    latency_table,
)
from combax.models.chain import ChainNet  # noqa: E402
from combax.models.classifier_train import TrainConfig, init_variables  # noqa: E402
from combax.models.mobilenetv2 import mobilenetv2_spec  # noqa: E402
from combax.models.vgg import vgg_spec  # noqa: E402
from combax.solvers import depth  # noqa: E402

HW = 12
FAST = dict(warmup=1, runs=3, progress=False)  # timing settings that keep each block well under 0.1 s


@pytest.fixture(scope="module")
def spec():
    """A 3-row MobileNetV2 (L = 11): residuals, one break, optional block ends, 25 valid blocks, 42 quadruples."""
    s = mobilenetv2_spec(
        0.25,
        n_classes=10,
        in_channels=1,
        stem_stride=1,
        settings=((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 1, 1)),
        last_channel=32,
    )
    assert s.L == 11 and s.breaks and s.residuals and s.optional
    return s


@pytest.fixture(scope="module")
def model(spec):
    return ChainNet(spec)


@pytest.fixture(scope="module")
def variables(model):
    return init_variables(model, (HW, HW, 1), seed=0)


@pytest.fixture(scope="module")
def val():
    rng = np.random.default_rng(0)
    return rng.standard_normal((40, HW, HW, 1)).astype(np.float32), rng.integers(0, 10, 40)


@pytest.fixture(scope="module")
def lat(spec):
    return latency_table(spec, hw=HW, batch=2, **FAST)


@pytest.fixture(scope="module")
def imp_loss(model, variables, val):
    return importance_table(model, variables, *val, score="loss", progress=False)


@pytest.fixture(scope="module")
def imp_acc(model, variables, val):
    return importance_table(model, variables, *val, score="accuracy", progress=False, chunk=7)


def _valid(spec):
    n = spec.L + 1
    m = np.zeros((n, n), dtype=bool)
    for i, j in spec.valid_blocks():
        m[i, j] = True
    return m


def _allowed(spec):
    return depth.allowed_flags(_valid(spec), spec.optional, exclude_zeros=True)


# -- latency -------------------------------------------------------------------------------------------------------
def test_latency_is_finite_and_positive_exactly_on_valid_blocks(spec, lat):
    assert lat.latency.shape == lat.spread.shape == (spec.L + 1, spec.L + 1)
    np.testing.assert_array_equal(np.isfinite(lat.latency), _valid(spec))
    np.testing.assert_array_equal(np.isfinite(lat.spread), _valid(spec))
    assert np.all(lat.latency[_valid(spec)] > 0)
    assert np.all(lat.spread[_valid(spec)] >= 0)
    assert (lat.backend, lat.batch, lat.hw, lat.threads, lat.spec_name) == ("onnxruntime", 2, HW, 1, spec.name)


def test_latency_of_a_block_subset_times_only_those(spec):
    blocks = [(0, 1), (2, 5), (5, 8)]
    t = latency_table(spec, hw=HW, batch=2, blocks=blocks, **FAST)
    assert sorted(map(tuple, np.argwhere(np.isfinite(t.latency)).tolist())) == blocks


def test_latency_covers_blocks_that_end_at_a_pool():
    """VGG: blocks end at pool positions (the pool is timed with the block); every valid block gets an entry."""
    s = vgg_spec(cfg=(4, "M", 4, 4, "M"), n_classes=10, in_channels=1)
    assert s.pools
    t = latency_table(s, hw=8, batch=2, **FAST)
    np.testing.assert_array_equal(np.isfinite(t.latency), _valid(s))


def test_latency_xla_backend(spec):
    t = latency_table(spec, hw=HW, batch=2, backend="xla", blocks=[(0, 2), (5, 8)], **FAST)
    assert t.backend == "xla" and np.isfinite(t.latency).sum() == 2


# -- importance: proxy ---------------------------------------------------------------------------------------------
def test_proxy_importance_is_finite_exactly_on_the_allowed_quadruples(spec, imp_loss, imp_acc):
    for t in (imp_loss, imp_acc):
        np.testing.assert_array_equal(np.isfinite(t.importance), _allowed(spec))
        assert t.method == "proxy" and t.spec_name == spec.name
    assert np.isfinite(imp_acc.importance).sum() == 42
    assert imp_acc.score == "accuracy" and 0.0 <= imp_acc.base_score <= 1.0
    assert np.nanmax(np.abs(imp_acc.importance)) <= 1.0
    assert imp_loss.score == "loss" and imp_loss.base_score > 0


def test_proxy_entry_equal_to_the_base_network_is_zero(spec, imp_loss, imp_acc):
    """A single-conv block with its default flags changes nothing: h = 0 exactly."""
    i = next(p for p in range(1, spec.L - 1) if p in spec.default_acts and p + 1 in spec.default_acts)
    assert imp_loss.importance[i, i + 1, 1, 1] == 0.0
    assert imp_acc.importance[i, i + 1, 1, 1] == 0.0
    assert imp_acc.importance[0, 1, 1, 1] == 0.0  # conv 1 of this chain keeps its activation by default


def test_proxy_removing_activations_changes_the_score(spec, imp_loss):
    h = imp_loss.importance
    assert np.any(np.abs(h[np.isfinite(h)]) > 1e-4)
    # a long block drops several activations at once
    i, j = max(spec.valid_blocks(), key=lambda b: b[1] - b[0])
    assert j - i >= 3 and h[i, j, 1, 1] != 0.0


def test_proxy_with_blocks_measures_only_their_quadruples(spec, model, variables, val, imp_loss):
    blocks = [(2, 5), (5, 8)]
    t = importance_table(model, variables, *val, score="loss", blocks=blocks, progress=False)
    finite = {tuple(e[:2]) for e in np.argwhere(np.isfinite(t.importance)).tolist()}
    assert finite == set(blocks)
    for i, j in blocks:  # the same values as in the full table
        np.testing.assert_array_equal(t.importance[i, j], imp_loss.importance[i, j])


# -- importance: finetune ------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_finetune_importance_is_finite_on_the_measured_quadruples(val):
    """Two SGD steps per entry on a 5-conv chain: a re-initialised single conv (both flags at i) and a merged pair."""
    s = mobilenetv2_spec(
        0.25, n_classes=10, in_channels=1, stem_stride=1, settings=((1, 16, 1, 1), (6, 24, 1, 2)), last_channel=16
    )
    net = ChainNet(s)
    v = init_variables(net, (HW, HW, 1), seed=1)
    x, y = val
    cfg = TrainConfig(epochs=1, batch_size=20, lr=0.01, warmup_steps=0)
    blocks = [(0, 2), (2, 3)]
    t = importance_table(
        net, v, x, y, method="finetune", x_train=x, y_train=y, finetune=cfg, blocks=blocks, progress=False
    )
    E = _allowed(s)
    sub = np.zeros_like(E)
    for i, j in blocks:
        sub[i, j] = E[i, j]
    assert sub.sum() == 3  # (0, 2, 1, 1), (2, 3, 0, 1), (2, 3, 1, 1)
    np.testing.assert_array_equal(np.isfinite(t.importance), sub)
    assert t.method == "finetune" and 0.0 <= t.base_score <= 1.0
    assert np.all(np.abs(t.importance[sub]) <= 1.0)


# -- executors -----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def process_pool():
    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn")) as ex:
        yield ex


@pytest.fixture(scope="module")
def dask_executor():
    pytest.importorskip("distributed", reason="Dask executors need the extra `cluster`")
    from dask.distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            yield client.get_executor()


@pytest.fixture(params=["process_pool", "dask"])
def executor(request):
    return request.getfixturevalue("process_pool" if request.param == "process_pool" else "dask_executor")


@pytest.mark.slow
def test_executor_latency_has_the_in_process_pattern(spec, lat, executor):
    t = latency_table(spec, hw=HW, batch=2, executor=executor, **FAST)
    np.testing.assert_array_equal(np.isfinite(t.latency), np.isfinite(lat.latency))
    assert np.all(t.latency[np.isfinite(t.latency)] > 0)


@pytest.mark.slow
def test_executor_importance_equals_in_process(model, variables, val, imp_loss, executor):
    t = importance_table(model, variables, *val, score="loss", executor=executor, chunk=10, progress=False)
    np.testing.assert_array_equal(np.isfinite(t.importance), np.isfinite(imp_loss.importance))
    np.testing.assert_allclose(t.importance, imp_loss.importance, rtol=0, atol=1e-6)
    assert t.base_score == imp_loss.base_score


# -- normalisation, persistence, problem ---------------------------------------------------------------------------
def test_normalised_subtracts_alpha_times_the_single_layer_mean(imp_loss):
    h = imp_loss.importance
    n = h.shape[0]
    singles = [
        h[i, i + 1, x, y] for i in range(n - 1) for x in (0, 1) for y in (0, 1) if np.isfinite(h[i, i + 1, x, y])
    ]
    want = h - 1.5 * np.mean(singles)
    got = imp_loss.normalised(1.5)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(h))
    np.testing.assert_allclose(got[np.isfinite(h)], want[np.isfinite(h)], rtol=1e-12)
    np.testing.assert_array_equal(imp_loss.normalised(0.0)[np.isfinite(h)], h[np.isfinite(h)])


def test_tables_round_trip_through_npz(tmp_path, lat, imp_acc):
    lat2 = LatencyTable.load(lat.save(tmp_path / "lat.npz"))
    np.testing.assert_array_equal(lat2.latency, lat.latency)
    np.testing.assert_array_equal(lat2.spread, lat.spread)
    assert (lat2.backend, lat2.batch, lat2.hw, lat2.threads, lat2.spec_name) == (
        lat.backend,
        lat.batch,
        lat.hw,
        lat.threads,
        lat.spec_name,
    )
    imp2 = ImportanceTable.load(imp_acc.save(tmp_path / "sub" / "imp.npz"))
    np.testing.assert_array_equal(imp2.importance, imp_acc.importance)
    assert (imp2.base_score, imp2.method, imp2.score, imp2.spec_name) == (
        imp_acc.base_score,
        imp_acc.method,
        imp_acc.score,
        imp_acc.spec_name,
    )
    none = LatencyTable.load(LatencyTable(lat.latency, lat.spread, "xla", 1, 8, None, "x").save(tmp_path / "none.npz"))
    assert none.threads is None


def test_depth_problem_is_solvable(spec, lat, imp_loss):
    prob = depth_problem(lat, imp_loss, spec, alpha=1.2)
    assert isinstance(prob, depth.DepthProblem) and prob.n_layers == spec.L
    np.testing.assert_array_equal(prob.optional, spec.optional)
    budget = float(np.nansum([lat.latency[i, i + 1] for i in range(spec.L)]))  # the uncompressed stack
    sol = depth.solve(prob, budget)
    assert sol.status == "optimal" and sol.latency <= budget + 1e-9
    spec.check_structure(sol.activations, sol.cuts)


def test_depth_problem_rejects_tables_of_another_network(spec, lat, imp_loss):
    other = vgg_spec(cfg=(4, "M", 4), n_classes=10, in_channels=1)
    with pytest.raises(ValueError, match="`latency` was built for"):
        depth_problem(lat, imp_loss, other)
    renamed = ImportanceTable(imp_loss.importance, 0.0, "proxy", "loss", "other")
    with pytest.raises(ValueError, match="`importance` was built for"):
        depth_problem(lat, renamed, spec)
    short = LatencyTable(lat.latency[:-1, :-1], lat.spread[:-1, :-1], "onnxruntime", 2, HW, 1, spec.name)
    with pytest.raises(ValueError, match=re.escape("`latency` has shape (11, 11)")):
        depth_problem(short, imp_loss, spec)


# -- input validation ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(hw=0), "`hw` must be an integer >= 1"),
        (dict(batch=0), "`batch` must be an integer >= 1"),
        (dict(backend="torch"), "`backend` must be one of"),
        (dict(runs=0), "`runs` must be an integer >= 1"),
        (dict(warmup=-1), "`warmup` must be an integer >= 0"),
        (dict(threads=0), "`threads` must be None or an integer >= 1"),
        (dict(blocks=[(0, 1), (4, 7)]), re.escape("`blocks` holds [(4, 7)]")),
        (dict(blocks=[(3, 3)]), "`blocks` holds"),
        (dict(executor=object()), "`executor` must be a concurrent.futures.Executor"),
    ],
)
def test_latency_table_rejects_bad_input(spec, kwargs, match):
    args = dict(hw=HW, progress=False) | kwargs
    with pytest.raises(ValueError, match=match):
        latency_table(spec, **args)


def test_latency_table_rejects_an_image_too_small_for_the_pools():
    s = vgg_spec(cfg=(4, "M", 4, "M"), n_classes=10, in_channels=1)
    with pytest.raises(ValueError, match="`hw` = 2 is too small"):
        latency_table(s, hw=2, progress=False)


def test_importance_table_rejects_bad_input(spec, model, variables, val):
    x, y = val
    cases = [
        (dict(method="exact"), "`method` must be one of"),
        (dict(score="top5"), "`score` must be one of"),
        (dict(chunk=0), "`chunk` must be an integer >= 1"),
        (dict(blocks=[(4, 7)]), "`blocks` holds"),
        (dict(method="finetune"), "needs `x_train`, `y_train`, `finetune`"),
        (dict(method="finetune", x_train=x, y_train=y), "needs `finetune`"),
        (dict(method="finetune", x_train=x, y_train=y, finetune=dict(epochs=1)), "`finetune` must be a TrainConfig"),
        (
            dict(method="finetune", x_train=x, y_train=y, finetune=TrainConfig(batch_size=1000)),
            re.escape("`finetune.batch_size` (1000) exceeds"),
        ),
    ]
    for kwargs, match in cases:
        with pytest.raises(ValueError, match=match):
            importance_table(model, variables, x, y, progress=False, **kwargs)
    bad_data = [
        ((x[..., 0], y), "`x_val` must be"),
        ((np.repeat(x, 3, axis=-1), y), "`x_val` must be"),
        ((x, y[:-1]), "`y_val` must have shape"),
        ((x, y + 10), "`y_val` must hold integer labels"),
    ]
    for (xv, yv), match in bad_data:
        with pytest.raises(ValueError, match=match):
            importance_table(model, variables, xv, yv, progress=False)
    params = {k: v for k, v in variables["params"].items() if k != "conv3"}
    with pytest.raises(ValueError, match=re.escape("`variables` do not match") + ".*conv3"):
        importance_table(model, {"params": params, "batch_stats": variables["batch_stats"]}, x, y, progress=False)
    other = init_variables(ChainNet(mobilenetv2_spec(0.5, n_classes=10, in_channels=1)), (HW, HW, 1))
    with pytest.raises(ValueError, match="`variables` do not match .*kernel has shape"):
        importance_table(model, other, x, y, progress=False)
    with pytest.raises(ValueError, match="`model` must be a ChainNet"):
        importance_table(spec, variables, x, y, progress=False)
