"""EMI: the JSD estimator and the KL prior against NumPy formulas, the loss falls on a fixed batch, novelty reward."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from combax.models.emi import (
    EMIConfig,
    EMINetworks,
    diversity_reward,
    emi_loss,
    emi_update,
    gaussian_kl_prior,
    jsd_mi,
    make_emi_state,
    residual_reward,
)

SMALL = dict(state_hidden=(32,), action_hidden=16, error_hidden=32, critic_hidden=(32,), minibatch=128)


def _softplus(x):
    return np.logaddexp(0.0, x)


def test_jsd_is_minus_two_log_two_at_zero_critic():
    z = jnp.zeros(7)
    np.testing.assert_allclose(float(jsd_mi(z, z)), -2 * np.log(2), rtol=1e-6)


def test_jsd_matches_numpy_and_is_never_above_zero():
    rng = np.random.default_rng(0)
    for scale in (0.1, 1.0, 10.0, 100.0):
        tj = rng.normal(size=50) * scale
        tm = rng.normal(size=60) * scale
        ref = np.mean(-_softplus(-tj)) - np.mean(_softplus(tm))
        got = float(jsd_mi(jnp.asarray(tj, jnp.float32), jnp.asarray(tm, jnp.float32)))
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
        assert got <= 0.0


def _train_critic(x, y, steps=300):
    """Train a small critic T(x, y) by maximising the JSD bound with in-batch (shifted) negatives."""
    import flax.linen as nn
    import optax

    class T(nn.Module):
        @nn.compact
        def __call__(self, z):
            return nn.Dense(1)(nn.relu(nn.Dense(32)(z)))[:, 0]

    t = T()
    params = t.init(jax.random.PRNGKey(0), jnp.zeros((1, 2)))
    opt = optax.adam(1e-2)
    st = opt.init(params)
    h = x.shape[0] // 2

    def bound(p):
        joint = t.apply(p, jnp.stack([x[:h], y[:h]], -1))
        marg = t.apply(p, jnp.stack([x[:h], y[h : 2 * h]], -1))
        return jsd_mi(joint, marg)

    @jax.jit
    def step(p, s):
        g = jax.grad(lambda q: -bound(q))(p)
        u, s = opt.update(g, s)
        return optax.apply_updates(p, u), s

    for _ in range(steps):
        params, st = step(params, st)
    return float(bound(params))


def test_jsd_rises_on_dependent_pairs_but_not_on_independent_ones():
    rng = np.random.default_rng(1)
    x = rng.normal(size=1024).astype(np.float32)
    dep = _train_critic(jnp.asarray(x), jnp.asarray(x + 0.1 * rng.normal(size=1024).astype(np.float32)))
    ind = _train_critic(jnp.asarray(x), jnp.asarray(rng.normal(size=1024).astype(np.float32)))
    floor = -2 * np.log(2)
    assert dep > floor + 0.5, dep
    assert ind < floor + 0.1, ind


def test_kl_prior_zero_for_standard_batch_and_matches_numpy():
    rng = np.random.default_rng(2)
    d, b = 3, 200
    z = rng.normal(size=(b, d))
    z = z - z.mean(0)
    cov = z.T @ z / (b - 1)
    white = z @ np.linalg.inv(np.linalg.cholesky(cov)).T  # zero mean, identity (unbiased) covariance
    np.testing.assert_allclose(float(gaussian_kl_prior(jnp.asarray(white, jnp.float32))), 0.0, atol=1e-4)

    psi = rng.normal(size=(b, d)) * [0.5, 2.0, 1.0] + [1.0, -0.5, 0.0]
    mu = psi.mean(0)
    S = np.cov(psi, rowvar=False)
    ref = 0.5 * (np.trace(S) + mu @ mu - d - np.linalg.slogdet(S)[1])
    np.testing.assert_allclose(float(gaussian_kl_prior(jnp.asarray(psi, jnp.float32))), ref, rtol=1e-4)


def test_kl_prior_clamps_eigenvalues_of_a_degenerate_batch():
    psi = jnp.tile(jnp.array([[1.0, 2.0]]), (8, 1))  # zero covariance: both eigenvalues clamp at 1e-6
    ref = 0.5 * (2e-6 + 5.0 - 2 - 2 * np.log(1e-6))
    np.testing.assert_allclose(float(gaussian_kl_prior(psi)), ref, rtol=1e-4)


def _deepsea_batch(n, rows, cols, acts):
    """One-hot DeepSea transitions with action 1 = right (no randomisation): s, a one-hot, s'."""
    m = len(rows)
    s = np.zeros((m, n * n), np.float32)
    s[np.arange(m), rows * n + cols] = 1
    nc = np.clip(cols + np.where(acts == 1, 1, -1), 0, n - 1)
    sn = np.zeros_like(s)
    live = rows + 1 < n
    sn[np.where(live)[0], (rows + 1)[live] * n + nc[live]] = 1
    return jnp.asarray(s), jnp.asarray(np.eye(2, dtype=np.float32)[acts]), jnp.asarray(sn)


def _visited_and_novel(n=8, m=256, seed=0):
    rng = np.random.default_rng(seed)
    r = rng.integers(0, n, m)
    old = _deepsea_batch(n, r, np.minimum(rng.integers(0, 2, m), r), rng.integers(0, 2, m))
    r2 = rng.integers(5, n, m)
    new = _deepsea_batch(n, r2, np.minimum(rng.integers(5, n, m), r2), rng.integers(0, 2, m))
    return old, new


def test_loss_and_reward_shapes_and_loss_falls_on_a_fixed_batch():
    cfg = EMIConfig(d=4, **SMALL)
    net = EMINetworks(cfg)
    (s, a, sn), _ = _visited_and_novel()
    st = make_emi_state(jax.random.PRNGKey(0), s.shape[1], 2, cfg)
    loss0, terms0 = emi_loss(st.params, net, s[:128], a[:128], sn[:128])
    assert loss0.shape == () and all(x.shape == () for x in terms0)
    assert residual_reward(st.params, net, s, a, sn).shape == (s.shape[0],)
    assert diversity_reward(st.params, net, s, a, sn).shape == (s.shape[0],)
    upd = jax.jit(lambda t, k: emi_update(t, net, s, a, sn, k))
    for i in range(15):
        st, terms = upd(st, jax.random.PRNGKey(i))
    loss1, _ = emi_loss(st.params, net, s[:128], a[:128], sn[:128])
    assert float(loss1) < float(loss0)


def test_residual_reward_higher_on_novel_transitions_after_training_on_visited_ones():
    cfg = EMIConfig(d=4, **SMALL)
    net = EMINetworks(cfg)
    (s, a, sn), (s2, a2, sn2) = _visited_and_novel()
    st = make_emi_state(jax.random.PRNGKey(0), s.shape[1], 2, cfg)
    upd = jax.jit(lambda t, k: emi_update(t, net, s, a, sn, k))
    for i in range(40):
        st, _ = upd(st, jax.random.PRNGKey(i))
    old = float(residual_reward(st.params, net, s, a, sn).mean())
    new = float(residual_reward(st.params, net, s2, a2, sn2).mean())
    assert new > 2 * old, (old, new)


def test_residual_reward_uses_the_parameters_it_is_given():
    """The adapter computes r_int before emi_update: the reward with the old params differs from the new one's."""
    cfg = EMIConfig(d=2, **SMALL)
    net = EMINetworks(cfg)
    (s, a, sn), _ = _visited_and_novel()
    st = make_emi_state(jax.random.PRNGKey(0), s.shape[1], 2, cfg)
    before = residual_reward(st.params, net, s, a, sn)
    st2, _ = emi_update(st, net, s, a, sn, jax.random.PRNGKey(0))
    np.testing.assert_array_equal(np.asarray(residual_reward(st.params, net, s, a, sn)), np.asarray(before))
    assert not np.allclose(np.asarray(residual_reward(st2.params, net, s, a, sn)), np.asarray(before))


@pytest.mark.parametrize("kwargs,name", [({"d": 0}, "d"), ({"reward": "x"}, "reward"), ({"minibatch": 3}, "minibatch")])
def test_config_errors_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        EMIConfig(**kwargs)
