"""PPO pieces against NumPy: GAE against the textbook backward loop, the clipped loss against a hand computation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from combax.models.ppo import PPOBatch, PPOConfig, gae, make_actor_critic_state, ppo_loss, ppo_update


def _gae_numpy(rewards, values, dones, last_value, gamma, lam):
    T = len(rewards)
    adv = np.zeros_like(values)
    next_adv = np.zeros_like(last_value)
    for t in reversed(range(T)):
        next_v = last_value if t == T - 1 else values[t + 1]
        nd = 1.0 - dones[t]
        delta = rewards[t] + gamma * nd * next_v - values[t]
        next_adv = delta + gamma * lam * nd * next_adv
        adv[t] = next_adv
    return adv, adv + values


@pytest.mark.parametrize("gamma,lam", [(0.99, 0.95), (0.9, 1.0), (1.0, 0.0)])
def test_gae_matches_numpy_loop(gamma, lam):
    rng = np.random.default_rng(0)
    T, E = 12, 3
    rewards = rng.normal(size=(T, E)).astype(np.float32)
    values = rng.normal(size=(T, E)).astype(np.float32)
    dones = rng.random((T, E)) < 0.25
    last = rng.normal(size=(E,)).astype(np.float32)
    adv, tgt = gae(jnp.asarray(rewards), jnp.asarray(values), jnp.asarray(dones), jnp.asarray(last), gamma, lam)
    ref_adv, ref_tgt = _gae_numpy(rewards, values, dones.astype(np.float32), last, gamma, lam)
    np.testing.assert_allclose(np.asarray(adv), ref_adv, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(tgt), ref_tgt, rtol=1e-5, atol=1e-5)


def test_gae_lambda_one_no_done_is_discounted_return_minus_value():
    r = np.array([1.0, 0.0, 2.0], np.float32)
    v = np.array([0.5, 0.1, -0.3], np.float32)
    adv, _ = gae(jnp.asarray(r), jnp.asarray(v), jnp.zeros(3), jnp.float32(4.0), 0.5, 1.0)
    ret = np.array([1 + 0.5 * 0 + 0.25 * 2 + 0.125 * 4, 0 + 0.5 * 2 + 0.25 * 4, 2 + 0.5 * 4])
    np.testing.assert_allclose(np.asarray(adv), ret - v, rtol=1e-6)


def test_ppo_loss_matches_hand_computation():
    cfg = PPOConfig(num_envs=2, num_steps=2, num_minibatches=1, hidden=(8,))
    ts = make_actor_critic_state(jax.random.PRNGKey(0), 3, 2, cfg)
    rng = np.random.default_rng(1)
    obs = rng.normal(size=(4, 3)).astype(np.float32)
    batch = PPOBatch(
        obs=jnp.asarray(obs),
        action=jnp.array([0, 1, 1, 0]),
        log_prob=jnp.array([-0.9, -0.5, -0.8, -0.6]),
        value_ext=jnp.array([0.1, -0.2, 0.3, 0.0]),
        value_int=jnp.zeros(4),
        advantage=jnp.array([1.0, -0.5, 0.25, 2.0]),
        target_ext=jnp.array([0.5, 0.3, -1.0, 0.2]),
        target_int=jnp.zeros(4),
    )
    loss, (v_loss, actor, entropy) = ppo_loss(ts.params, ts.apply_fn, batch, cfg, False)

    logits, v, _ = (np.asarray(x, np.float64) for x in ts.apply_fn(ts.params, batch.obs))
    logp_all = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    a = np.asarray(batch.action)
    logp = logp_all[np.arange(4), a]
    ent = -(np.exp(logp_all) * logp_all).sum(-1).mean()
    adv = np.asarray(batch.advantage, np.float64)
    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    ratio = np.exp(logp - np.asarray(batch.log_prob))
    eps = cfg.clip_eps
    ref_actor = -np.minimum(ratio * adv, np.clip(ratio, 1 - eps, 1 + eps) * adv).mean()
    v_old, tgt = np.asarray(batch.value_ext), np.asarray(batch.target_ext)
    v_clip = v_old + np.clip(v - v_old, -eps, eps)
    ref_v = 0.5 * np.maximum((v - tgt) ** 2, (v_clip - tgt) ** 2).mean()
    ref = ref_actor + cfg.vf_coef * ref_v - cfg.ent_coef * ent
    np.testing.assert_allclose(float(actor), ref_actor, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(v_loss), ref_v, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(entropy), ent, rtol=1e-5)
    np.testing.assert_allclose(float(loss), ref, rtol=1e-5, atol=1e-6)


def test_ppo_update_jits_and_lowers_the_loss_on_a_fixed_batch():
    cfg = PPOConfig(num_envs=4, num_steps=8, num_minibatches=2, update_epochs=2, hidden=(16,))
    ts = make_actor_critic_state(jax.random.PRNGKey(0), 3, 2, cfg)
    rng = np.random.default_rng(2)
    n = cfg.batch_size
    obs = jnp.asarray(rng.normal(size=(n, 3)).astype(np.float32))
    batch = PPOBatch(
        obs=obs,
        action=jnp.asarray(rng.integers(0, 2, n)),
        log_prob=jnp.full((n,), np.log(0.5), jnp.float32),
        value_ext=jnp.zeros(n),
        value_int=jnp.zeros(n),
        advantage=jnp.asarray(rng.normal(size=n).astype(np.float32)),
        target_ext=jnp.asarray(rng.normal(size=n).astype(np.float32)),
        target_int=jnp.zeros(n),
    )
    upd = jax.jit(lambda t, k: ppo_update(t, batch, k, cfg))
    before = float(ppo_loss(ts.params, ts.apply_fn, batch, cfg, False)[1][0])
    for i in range(5):
        ts, _ = upd(ts, jax.random.PRNGKey(i))
    after = float(ppo_loss(ts.params, ts.apply_fn, batch, cfg, False)[1][0])
    assert after < before, "the value loss falls on a fixed batch"


@pytest.mark.parametrize(
    "kwargs,name",
    [({"num_envs": 0}, "num_envs"), ({"num_minibatches": 3}, "num_minibatches"), ({"gamma": 1.5}, "gamma")],
)
def test_config_errors_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        PPOConfig(**kwargs)
