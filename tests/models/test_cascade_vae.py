"""CascadeVAE model pieces: shapes, the beta-VAE loss against NumPy, the cascade schedule, the unary costs."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from combax.models import cascade_vae as cv

TINY = cv.VAEConfig(image_size=16, n_continuous=3, n_categories=3, conv_features=(4, 4, 8, 8), hidden=16)


@pytest.fixture(scope="module")
def tiny():
    model = cv.VAE(TINY)
    params = cv.init_params(TINY, seed=0)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.integers(0, 2, size=(5, 16, 16, 1)), jnp.float32)
    eps = jnp.asarray(rng.standard_normal((5, 3)), jnp.float32)
    encode = cv.make_encode_fn(model)
    logits_fn = jax.jit(lambda p, zd: model.apply(p, zd, method="decode"))
    return model, params, x, eps, encode, logits_fn


@pytest.mark.parametrize("size", [16, 32, 64])
def test_encoder_decoder_shapes(size):
    cfg = cv.VAEConfig(image_size=size, n_continuous=4, n_categories=2)
    model = cv.VAE(cfg)
    params = cv.init_params(cfg, 1)
    x = jax.ShapeDtypeStruct((7, size, size, 1), jnp.float32)
    mu, sigma = jax.eval_shape(lambda p, x: model.apply(p, x, method="encode"), params, x)
    assert mu.shape == sigma.shape == (7, 4)
    zd = jax.ShapeDtypeStruct((7, 6), jnp.float32)
    logits = jax.eval_shape(lambda p, zd: model.apply(p, zd, method="decode"), params, zd)
    assert logits.shape == (7, size, size, 1)


def test_sigma_is_positive(tiny):
    model, params, x, eps, encode, _ = tiny
    mu, sigma = encode(params, x)
    assert mu.shape == (5, 3) and bool(jnp.all(sigma > 0)), "sigma = softplus(.) is positive"


def test_parameter_count_of_the_original_architecture():
    """Spec §4 at 64x64 (m = 6, S = 3): encoder 4 convs + fc256 + fc12, decoder fc256 + fc1024 + 4 deconvs."""
    params = cv.init_params(cv.VAEConfig(), 0)
    n = sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(params))
    conv = lambda i, o: 16 * i * o + o  # noqa: E731  4x4 kernels with bias
    dense = lambda i, o: i * o + o  # noqa: E731
    enc = conv(1, 32) + conv(32, 32) + conv(32, 64) + conv(64, 64) + dense(1024, 256) + dense(256, 12)
    dec = dense(9, 256) + dense(256, 1024) + conv(64, 64) + conv(64, 32) + conv(32, 32) + conv(32, 1)
    assert n == enc + dec


def test_init_is_he_truncated_normal_and_deterministic():
    a, b, c = (cv.init_params(TINY, s) for s in (3, 3, 4))
    for (path, wa), wb, wc in zip(
        jax.tree_util.tree_flatten_with_path(a)[0], jax.tree_util.tree_leaves(b), jax.tree_util.tree_leaves(c)
    ):
        np.testing.assert_array_equal(np.asarray(wa), np.asarray(wb))
        if path[-1].key == "bias":
            assert not np.any(np.asarray(wa))
            continue
        assert not np.array_equal(np.asarray(wa), np.asarray(wc)), "another seed gives other kernels"
        fan_in = int(np.prod(wa.shape[:-1]))
        std = np.sqrt(2.0 / fan_in) / 0.87962566103423978
        assert np.abs(np.asarray(wa)).max() <= 2.0 * std * (1 + 1e-6)
    big = cv.init_params(cv.VAEConfig(), 0)["params"]["encoder"]["Dense_0"]["kernel"]  # 262,144 draws
    np.testing.assert_allclose(np.std(np.asarray(big)) * np.sqrt(1024 / 2.0), 1.0, rtol=0.01)


def _np_bce_sum(logits, x):
    lo = np.asarray(logits, np.float64).reshape(len(x), -1)
    xx = np.asarray(x, np.float64).reshape(len(x), -1)
    return (np.maximum(lo, 0) - lo * xx + np.log1p(np.exp(-np.abs(lo)))).sum(axis=1)


def test_loss_matches_numpy(tiny):
    model, params, x, eps, encode, logits_fn = tiny
    d = jnp.asarray(np.eye(3)[[0, 2, 1, 1, 0]], jnp.float32)
    betas = jnp.asarray([0.1, 10.0, 3.0], jnp.float32)
    loss_fn = jax.jit(lambda p, x, e, d, b: cv.loss_fn(p, model, x, e, d, b, weight_decay=4e-5))
    loss, (recon, kl) = loss_fn(params, x, eps, d, betas)
    mu, sigma = (np.asarray(a, np.float64) for a in encode(params, x))
    z = mu + sigma * np.asarray(eps)
    logits = logits_fn(params, jnp.asarray(np.concatenate([z, np.asarray(d)], axis=1), jnp.float32))
    recon_np = _np_bce_sum(logits, np.asarray(x)).mean()
    kl_np = (0.5 * (mu**2 + sigma**2 - 2 * np.log(sigma + 1e-8) - 1)).mean(axis=0)
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    l2 = sum(float(np.sum(np.asarray(w, np.float64) ** 2)) for path, w in flat if path[-1].key == "kernel")
    assert l2 > 0
    expected = recon_np + float(np.dot(np.asarray(betas), kl_np)) + 4e-5 * l2
    np.testing.assert_allclose(float(recon), recon_np, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(kl), kl_np, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)


def test_kl_is_zero_at_the_prior():
    kl = cv.kl_per_dim(np.zeros((2, 3)), np.ones((2, 3)))
    np.testing.assert_allclose(np.asarray(kl), 0.0, atol=1e-6)


def test_unary_costs_match_a_loop(tiny):
    model, params, x, eps, encode, logits_fn = tiny
    unary = cv.make_unary_fn(model)
    u = np.asarray(unary(params, x, eps))
    assert u.shape == (5, 3)
    mu, sigma = encode(params, x)
    for z in (mu + sigma * eps, mu):  # eps as given; eps = 0 decodes from mu (the test-time costs)
        u_z = u if z is not mu else np.asarray(unary(params, x, jnp.zeros_like(eps)))
        for k in range(3):
            logits = logits_fn(params, jnp.concatenate([z, jnp.tile(jnp.eye(3)[k : k + 1], (5, 1))], axis=1))
            per_image = _np_bce_sum(logits, x)
            for i in range(5):
                np.testing.assert_allclose(u_z[i, k], per_image[i], rtol=1e-4, err_msg=f"(z_{i}, e_{k})")


# ------------------------------------------------------------------------------------------------ schedule


@pytest.mark.parametrize(
    ("t", "n_open"),
    [(0, 1), (19_999, 1), (20_000, 2), (40_000, 3), (60_000, 4), (79_999, 4), (80_000, 4), (99_999, 4),
     (100_000, 5), (119_999, 5), (120_000, 6), (299_999, 6)],
)  # fmt: skip
def test_cascade_timeline_of_the_original(t, n_open):
    sched = cv.CascadeSchedule("cascade", 6)
    assert sched.n_open(t) == n_open
    betas = sched.betas(t)
    assert betas.dtype == np.float32 and betas.shape == (6,)
    assert np.all(betas[:n_open] == np.float32(0.1)) and np.all(betas[n_open:] == np.float32(10.0))


def test_discrete_warmup_of_the_original():
    sched = cv.CascadeSchedule("cascade", 6)
    assert not sched.discrete_on(79_999) and sched.discrete_on(80_000) and sched.discrete_on(299_999)
    for kind in ("cascade-c", "betavae"):
        assert not cv.CascadeSchedule(kind, 10).discrete_on(10**6)


def test_cascade_c_timeline():
    sched = cv.CascadeSchedule("cascade-c", 10)
    for p in range(15):
        assert sched.n_open(p * 20_000) == min(p, 9) + 1
        assert sched.n_open(p * 20_000 + 19_999) == min(p, 9) + 1


@pytest.mark.parametrize("kind", ["cascade", "cascade-c"])
def test_one_more_dimension_every_r_steps(kind):
    r, m = 7, 5
    sched = cv.CascadeSchedule(kind, m, interval=r)
    opened = [sched.n_open(t) for t in range(0, 12 * r)]
    assert all(b - a in (0, 1) for a, b in zip(opened, opened[1:])), "at most one more dimension at a time"
    changes = [t for t in range(1, 12 * r) if opened[t] != opened[t - 1]]
    assert all(t % r == 0 for t in changes), "dimensions open only at stage boundaries"
    assert opened[-1] == m
    if kind == "cascade-c":
        assert changes == [r * p for p in range(1, m)]
    else:  # the original holds the count during the stage where discrete inference switches on
        assert changes == [r, 2 * r, 3 * r, 5 * r]


def test_betavae_betas():
    sched = cv.CascadeSchedule("betavae", 10, beta=4.0)
    assert np.all(sched.betas(0) == 4.0) and np.all(sched.betas(10**6) == 4.0)


# ------------------------------------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    ("kwargs", "msg"),
    [
        ({"image_size": 24}, "`image_size` must be a positive multiple of 16; got 24"),
        ({"n_continuous": 0}, "`n_continuous` must be at least 1; got 0"),
        ({"n_categories": 1}, "`n_categories` must be 0 (no discrete latent) or at least 2; got 1"),
        ({"conv_features": (1, 2, 3)}, "`conv_features` must be 4 positive channel counts; got (1, 2, 3)"),
        ({"hidden": 0}, "`hidden` must be at least 1; got 0"),
    ],
)
def test_vae_config_errors(kwargs, msg):
    with pytest.raises(ValueError, match=re.escape(msg)):
        cv.VAEConfig(**kwargs)


@pytest.mark.parametrize(
    ("args", "kwargs", "msg"),
    [
        (("vae", 6), {}, "`kind` must be 'cascade', 'cascade-c' or 'betavae'; got 'vae'"),
        (("cascade", 6), {"interval": 0}, "`interval` must be at least 1; got 0"),
        (("cascade", 0), {}, "`n_continuous` must be at least 1; got 0"),
        (("cascade", 6), {"warmup_stages": -1}, "`warmup_stages` must be non-negative; got -1"),
    ],
)
def test_schedule_errors(args, kwargs, msg):
    with pytest.raises(ValueError, match=re.escape(msg)):
        cv.CascadeSchedule(*args, **kwargs)
