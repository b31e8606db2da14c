"""The embedding CNN and the (masked) metric losses, checked against plain NumPy re-implementations."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from combax.models.embedding import EmbeddingConfig, EmbeddingNet, init_params, param_count, transplant_trunk
from combax.models.metric_losses import (
    l2_normalize,
    masked_l1_distances,
    masked_npairs_loss,
    masked_triplet_loss,
    npairs_loss,
    pairwise_sq_distances,
    semihard_triplet_from_distances,
    triplet_loss,
)

# ------------------------------------------------------------------------------------------ model


def test_output_shapes_and_parameter_count():
    cfg = EmbeddingConfig(channels=(4, 8), features=16, embed_dim=5, hash_dim=6, levels=2)
    params = init_params(cfg, (8, 8, 1), seed=0)
    emb, act = jax.jit(EmbeddingNet(cfg).apply)(params, jnp.zeros((3, 8, 8, 1)))
    assert emb.shape == (3, 5)
    assert act.shape == (3, 12)
    # conv 3x3x1x4 + 4, conv 3x3x4x8 + 8, dense (2*2*8)x16 + 16, heads 16x5 + 5 and 16x12 + 12
    expected = (9 * 4 + 4) + (9 * 4 * 8 + 8) + (32 * 16 + 16) + (16 * 5 + 5) + (16 * 12 + 12)
    assert param_count(params) == expected


def test_transplant_keeps_trunk_and_fresh_hash_head():
    cfg = EmbeddingConfig(channels=(4, 8), features=16, embed_dim=5, hash_dim=6)
    a, b = init_params(cfg, (8, 8, 1), seed=0), init_params(cfg, (8, 8, 1), seed=1)
    c = transplant_trunk(a, b)
    same = jax.tree_util.tree_map(lambda x, y: bool(jnp.all(x == y)), c["params"]["trunk"], b["params"]["trunk"])
    assert all(jax.tree_util.tree_leaves(same))
    assert bool(jnp.all(c["params"]["hash_head"]["kernel"] == a["params"]["hash_head"]["kernel"]))


@pytest.mark.parametrize(
    ("kwargs", "msg"),
    [
        ({"hash_dim": 0}, "`hash_dim` must be a positive integer; got 0"),
        ({"levels": 1.5}, "`levels` must be a positive integer; got 1.5"),
        ({"channels": (4,)}, "`channels` must be two positive integers; got (4,)"),
    ],
)
def test_config_errors(kwargs, msg):
    with pytest.raises(ValueError, match=re.escape(msg)):
        EmbeddingConfig(**kwargs)


def test_one_metric_step_lowers_nothing_to_nan_and_moves_params():
    cfg = EmbeddingConfig(channels=(4, 8), features=16, embed_dim=8, hash_dim=8)
    params = init_params(cfg, (8, 8, 1), seed=0)
    x = jax.random.normal(jax.random.PRNGKey(0), (12, 8, 8, 1))
    y = jnp.repeat(jnp.arange(4), 3)
    opt = optax.adam(1e-2)
    state = opt.init(params)

    @jax.jit
    def loss_fn(p):
        return triplet_loss(EmbeddingNet(cfg).apply(p, x, method=EmbeddingNet.embed), y, 0.5)

    loss, grads = jax.jit(jax.value_and_grad(loss_fn))(params)
    updates, state = opt.update(grads, state, params)
    new = optax.apply_updates(params, updates)
    assert np.isfinite(float(loss))
    assert float(loss_fn(new)) != float(loss)


# ------------------------------------------------------------------------------------------ losses (NumPy oracles)


def _np_semihard(D, y, margin):
    n = D.shape[0]
    total, count = 0.0, 0
    for a in range(n):
        negs = [j for j in range(n) if y[j] != y[a]]
        for p in range(n):
            if p == a or y[p] != y[a]:
                continue
            farther = [D[a, j] for j in negs if D[a, j] > D[a, p]]
            neg = min(farther) if farther else max(D[a, j] for j in negs)
            total += max(D[a, p] - neg + margin, 0.0)
            count += 1
    return total / count


@pytest.mark.parametrize("seed", range(5))
def test_semihard_triplet_matches_numpy_loop(seed):
    rng = np.random.default_rng(seed)
    f = rng.normal(size=(12, 4))
    y = rng.integers(0, 3, size=12)
    D = np.asarray(pairwise_sq_distances(jnp.asarray(f)))
    expected = _np_semihard(D, y, 0.3)
    got = float(jax.jit(semihard_triplet_from_distances)(jnp.asarray(D), jnp.asarray(y), 0.3))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_masked_l1_distance_matches_loop_and_full_mask_is_l1():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(5, 6))
    h = rng.random((5, 6)) < 0.4
    D = np.asarray(masked_l1_distances(jnp.asarray(f), jnp.asarray(h)))
    for i in range(5):
        for j in range(5):
            m = h[i] | h[j]
            np.testing.assert_allclose(D[i, j], np.abs(f[i] - f[j])[m].sum(), rtol=1e-5, atol=1e-6)
    full = np.asarray(masked_l1_distances(jnp.asarray(f), jnp.ones((5, 6))))
    np.testing.assert_allclose(full, np.abs(f[:, None] - f[None]).sum(-1), rtol=1e-5)


def test_masked_triplet_has_no_gradient_through_codes():
    rng = np.random.default_rng(1)
    f = jnp.asarray(rng.normal(size=(8, 6)))
    h = jnp.asarray((rng.random((8, 6)) < 0.5).astype(np.float32))
    y = jnp.repeat(jnp.arange(4), 2)
    g = jax.jit(jax.grad(lambda c: masked_triplet_loss(f, c, y, 1.0)))(h)
    assert float(jnp.abs(g).sum()) == 0.0
    gf = jax.jit(jax.grad(lambda a: masked_triplet_loss(a, h, y, 1.0)))(f)
    assert float(jnp.abs(gf).sum()) > 0.0


def _np_npairs(S, y, a, p, reg):
    same = (y[:, None] == y[None]).astype(float)
    t = same / same.sum(1, keepdims=True)
    logp = S - np.log(np.exp(S - S.max(1, keepdims=True)).sum(1, keepdims=True)) - S.max(1, keepdims=True)
    return -(t * logp).sum(1).mean() + 0.25 * reg * ((a**2).sum(1).mean() + (p**2).sum(1).mean())


def test_npairs_and_masked_npairs_match_numpy():
    rng = np.random.default_rng(2)
    a, p = rng.normal(size=(6, 5)), rng.normal(size=(6, 5))
    y = np.array([0, 1, 2, 0, 1, 3])
    h = rng.random((6, 5)) < 0.5
    np.testing.assert_allclose(
        float(npairs_loss(jnp.asarray(a), jnp.asarray(p), jnp.asarray(y), 0.01)),
        _np_npairs(a @ p.T, y, a, p, 0.01),
        rtol=1e-5,
    )
    S = np.array([[((h[i] | h[j]) * a[i] * p[j]).sum() for j in range(6)] for i in range(6)])
    np.testing.assert_allclose(
        float(masked_npairs_loss(jnp.asarray(a), jnp.asarray(p), jnp.asarray(h), jnp.asarray(y), 0.01)),
        _np_npairs(S, y, a, p, 0.01),
        rtol=1e-5,
    )


def test_l2_normalize_gives_unit_rows():
    f = jnp.asarray(np.random.default_rng(3).normal(size=(4, 7)))
    np.testing.assert_allclose(np.linalg.norm(np.asarray(l2_normalize(f)), axis=1), 1.0, rtol=1e-6)
