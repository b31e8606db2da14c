"""The hash-stage adapter: sampler, exact codes through jax.pure_callback (jit, vmap, no recompilation), cascade,
and a one-step smoke test of both solver placements."""

import re
from dataclasses import replace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from combax.adapters.hashing import (
    CodeSolver,
    HashConfig,
    class_balanced_batches,
    class_means,
    make_codes_fn,
    make_train_step,
    train_hash,
    train_metric,
)
from combax.models.embedding import EmbeddingConfig, init_params
from combax.solvers import assign

NET = EmbeddingConfig(channels=(4, 8), features=16, embed_dim=8, hash_dim=8)


@pytest.fixture(scope="module")
def tiny():
    """36 random 8x8 images of 6 classes and a (one-step) metric-stage network."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(6), 6)
    images = rng.random((36, 8, 8, 1), dtype=np.float32) + labels[:, None, None, None] * 0.1
    params, losses = train_metric(images, labels, NET, steps=1, classes_per_batch=3, per_class=3, progress=False)
    return images, labels, params


def test_sampler_is_class_major_balanced_and_deterministic():
    labels = np.repeat(np.arange(7), [5, 6, 7, 8, 9, 10, 11])
    a = class_balanced_batches(labels, 4, 3, seed=1)
    b = class_balanced_batches(labels, 4, 3, seed=1)
    for _ in range(20):
        idx = next(a)
        np.testing.assert_array_equal(idx, next(b))
        rows = labels[idx].reshape(4, 3)
        assert np.all(rows == rows[:, :1]), "one class per row"
        assert np.unique(rows[:, 0]).size == 4, "distinct classes"
        assert all(np.unique(r).size == 3 for r in idx.reshape(4, 3)), "distinct items within a class"


def test_sampler_errors():
    labels = np.repeat(np.arange(3), [2, 5, 5])
    with pytest.raises(ValueError, match=re.escape("`classes_per_batch` must be at most the 3 classes present; got 4")):
        next(class_balanced_batches(labels, 4, 2))
    with pytest.raises(ValueError, match=re.escape("`per_class` = 3 exceeds the size of class(es) [0]")):
        next(class_balanced_batches(labels, 2, 3))


def test_class_means():
    f = jnp.arange(12.0).reshape(6, 2)
    np.testing.assert_allclose(np.asarray(class_means(f, 3, 2)), [[1, 2], [5, 6], [9, 10]])


@pytest.mark.parametrize("k", [1, 2, 3])
def test_flat_codes_are_the_exact_solver_optimum(k):
    rng = np.random.default_rng(k)
    means = rng.normal(size=(5, 1, 6))
    solver = CodeSolver(k, 0.7)
    codes = solver(means)
    assert codes.shape == (5, 1, 6) and codes.dtype == np.float32
    np.testing.assert_array_equal(codes.sum(-1), k)
    ref = assign.sparse_codes(means[:, 0], k, 0.7)
    np.testing.assert_allclose(
        assign.energy(means[:, 0], codes[:, 0].astype(bool), 0.7), assign.energy(means[:, 0], ref, 0.7), rtol=1e-12
    )
    assert len(solver.seconds) == 1


def test_compound_cascade_uses_parent_groups():
    rng = np.random.default_rng(5)
    means = rng.normal(size=(6, 2, 4))
    codes = CodeSolver(2, 0.5, levels=2, lam_group=10.0)(means)
    np.testing.assert_array_equal(codes[:, 0].sum(-1), 1)
    np.testing.assert_array_equal(codes[:, 1].sum(-1), 2)
    level1 = assign.sparse_codes(means[:, 0], 1, 0.5)
    assert assign.energy(means[:, 0], codes[:, 0].astype(bool), 0.5) == pytest.approx(
        assign.energy(means[:, 0], level1, 0.5)
    )
    parent = codes[:, 0].argmax(-1)
    level2 = assign.sparse_codes(means[:, 1], 2, 0.5, groups=parent, lam_group=10.0)
    got = assign.energy(means[:, 1], codes[:, 1].astype(bool), 0.5, groups=parent, lam_group=10.0)
    assert got == pytest.approx(assign.energy(means[:, 1], level2, 0.5, groups=parent, lam_group=10.0))
    # a large sibling penalty separates siblings (|group| * k <= d holds for every group of size <= 2)
    for g in np.unique(parent):
        rows = codes[parent == g, 1]
        if rows.shape[0] <= 2:
            assert rows.sum(0).max() <= 1


def test_codes_fn_under_jit_and_vmap():
    rng = np.random.default_rng(3)
    means = jnp.asarray(rng.normal(size=(4, 5, 1, 7)), jnp.float32)
    solver = CodeSolver(2, 1.0)
    fn = make_codes_fn(solver)
    single = jax.jit(fn)(means[0])
    np.testing.assert_array_equal(np.asarray(single), solver(np.asarray(means[0])))
    batched = jax.jit(jax.vmap(fn))(means)
    expected = np.stack([solver(np.asarray(m)) for m in means])
    np.testing.assert_array_equal(np.asarray(batched), expected)


def test_no_recompilation_across_minibatches(tiny):
    images, labels, params = tiny
    cfg = HashConfig(k=2, d=8, lam=1.0, classes_per_batch=3, per_class=3, steps=1)
    from combax.adapters.hashing import _optimizer

    opt = _optimizer(cfg.lr, cfg.trunk_lr_scale, cfg.weight_decay, params)
    state = opt.init(params)
    solver = CodeSolver(cfg.k, cfg.lam)
    step = make_train_step(NET, cfg, opt, make_codes_fn(solver))
    batches = class_balanced_batches(labels, 3, 3, seed=0)
    for _ in range(3):
        params, state, loss, codes = step(params, state, images[next(batches)])
        assert np.isfinite(float(loss))
    assert step._cache_size() == 1
    assert len(solver.seconds) == 3, "exactly one solver call per minibatch"


def test_one_step_smoke_callback_and_host_agree(tiny):
    images, labels, params = tiny
    cfg = HashConfig(k=2, d=8, lam=1.0, classes_per_batch=3, per_class=3, steps=2, seed=4)
    a = train_hash(images, labels, params, NET, cfg, progress=False)
    b = train_hash(images, labels, params, NET, replace(cfg, mode="host"), progress=False)
    assert a.losses.shape == (2,) and np.all(np.isfinite(a.losses))
    np.testing.assert_allclose(a.losses, b.losses, rtol=1e-5)
    np.testing.assert_array_equal(a.codes, b.codes)
    np.testing.assert_array_equal(a.codes.sum(-1), 2)
    assert np.all(a.solver_seconds > 0) and np.all(a.solver_seconds <= a.step_seconds)


def test_topk_reference_has_no_solver_call(tiny):
    images, labels, params = tiny
    cfg = HashConfig(k=2, d=8, lam=1.0, classes_per_batch=3, per_class=3, steps=1, solver="topk")
    r = train_hash(images, labels, params, NET, cfg, progress=False)
    assert np.all(r.solver_seconds == 0)
    np.testing.assert_array_equal(r.codes.sum(-1), 2)


@pytest.mark.parametrize(
    ("kwargs", "msg"),
    [
        ({"k": 9, "d": 8}, "`k` must be at most `d` = 8 (feasibility of the code problem); got 9"),
        ({"per_class": 1}, "`per_class` must be at least 2 (triplets need a positive); got 1"),
        ({"lam": -1.0}, "`lam` must be finite and non-negative; got -1.0"),
        ({"mode": "gpu"}, "`mode` must be 'callback' or 'host'; got 'gpu'"),
        ({"solver": "lp"}, "`solver` must be 'flow' or 'topk'; got 'lp'"),
    ],
)
def test_config_errors(kwargs, msg):
    with pytest.raises(ValueError, match=re.escape(msg)):
        HashConfig(**kwargs)


def test_train_hash_rejects_mismatched_network(tiny):
    images, labels, params = tiny
    with pytest.raises(ValueError, match=re.escape("`net` must have hash_dim=16 and levels=1 like `config`")):
        train_hash(images, labels, params, NET, HashConfig(d=16, classes_per_batch=3, per_class=3), progress=False)


def test_init_params_error():
    with pytest.raises(ValueError, match=re.escape("`image_shape` must be (H, W, C); got (8, 8)")):
        init_params(NET, (8, 8))
