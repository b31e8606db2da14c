"""DeepSea: optimal return 0.99, exactly one of 2^N action sequences succeeds (dithering = 2^-N), jit/vmap."""

import itertools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from combax.envs import DeepSea, make_env


def _rollout(env, params, policy):
    """Run one episode with ``policy(state) -> action``; returns (rewards, successes, obs list, steps)."""
    key = jax.random.PRNGKey(0)
    obs, state = env.reset(key, params)
    rewards, successes, observations = [], [], [obs]
    for _ in range(env.size + 5):
        out = env.step(key, state, policy(state), params)
        rewards.append(float(out.reward))
        successes.append(bool(out.success))
        observations.append(out.obs)
        state = out.state
        if bool(out.done):
            break
    return np.array(rewards), np.array(successes), observations


@pytest.mark.parametrize("size", [2, 5, 10, 20])
@pytest.mark.parametrize("seed", [0, 1])
def test_optimal_policy_reaches_treasure_with_return_0_99(size, seed):
    env = DeepSea(size)
    params = env.default_params(jax.random.PRNGKey(seed))
    rewards, successes, _ = _rollout(env, params, lambda s: env.right_action(s, params))
    assert len(rewards) == size, "every episode lasts exactly N steps"
    np.testing.assert_allclose(rewards.sum(), 0.99, rtol=1e-6)
    assert successes[-1] and not successes[:-1].any()


def test_always_left_gets_zero_and_never_succeeds():
    env = DeepSea(8)
    params = env.default_params(jax.random.PRNGKey(3))
    rewards, successes, _ = _rollout(env, params, lambda s: 1 - env.right_action(s, params))
    assert rewards.sum() == 0.0 and not successes.any()


@pytest.mark.parametrize("size", [4, 7])
def test_exactly_one_action_sequence_succeeds_so_dithering_is_2_to_minus_n(size):
    """Brute force over all 2^N open-loop action sequences: the uniform policy succeeds with probability 2^-N."""
    env = DeepSea(size)
    params = env.default_params(jax.random.PRNGKey(11))
    step = jax.jit(env.step)
    key = jax.random.PRNGKey(0)
    wins, returns = 0, []
    for seq in itertools.product((0, 1), repeat=size):
        _, state = env.reset(key, params)
        total, won = 0.0, False
        for a in seq:
            out = step(key, state, jnp.int32(a), params)
            total += float(out.reward)
            won |= bool(out.success)
            state = out.state
        wins += won
        returns.append(total)
    assert wins == 1
    assert wins / 2**size == 2.0**-size
    np.testing.assert_allclose(max(returns), 0.99, rtol=1e-6)


def test_observation_is_one_hot_then_zero_at_the_end():
    env = DeepSea(5)
    params = env.default_params(jax.random.PRNGKey(0))
    _, _, observations = _rollout(env, params, lambda s: env.right_action(s, params))
    for t, obs in enumerate(observations[:-1]):
        assert obs.shape == (25,) and float(obs.sum()) == 1.0
        assert int(jnp.argmax(obs)) == t * 5 + t  # on the diagonal under the optimal policy
    assert float(jnp.abs(observations[-1]).sum()) == 0.0


def test_action_mapping_is_random_per_cell_unless_disabled():
    env = DeepSea(40)
    m = np.asarray(env.default_params(jax.random.PRNGKey(0)).action_mapping)
    assert m.shape == (40, 40) and set(np.unique(m)) == {0, 1}
    assert 0.4 < m.mean() < 0.6
    m2 = np.asarray(env.default_params(jax.random.PRNGKey(1)).action_mapping)
    assert (m != m2).any(), "different keys give different mappings"
    fixed = DeepSea(6, randomize_actions=False).default_params(jax.random.PRNGKey(0)).action_mapping
    assert bool((fixed == 1).all())


def test_step_jits_and_vmaps_over_instances():
    env = DeepSea(6)
    keys = jax.random.split(jax.random.PRNGKey(0), 8)
    params = jax.vmap(env.default_params)(keys)
    obs, state = jax.vmap(env.reset)(keys, params)
    actions = jnp.arange(8) % 2
    out = jax.jit(jax.vmap(env.step))(keys, state, actions, params)
    assert out.obs.shape == (8, 36) and out.reward.shape == (8,) and out.done.shape == (8,)
    for i in range(8):
        p_i = jax.tree_util.tree_map(lambda x, i=i: x[i], params)
        s_i = jax.tree_util.tree_map(lambda x, i=i: x[i], state)
        ref = env.step(keys[i], s_i, actions[i], p_i)
        assert float(ref.reward) == float(out.reward[i])
        assert int(ref.state.column) == int(out.state.column[i])


@pytest.mark.parametrize(
    ("kwargs", "msg"),
    [
        ({"size": 1}, "`size` must be an integer >= 2; got 1"),
        ({"size": 2.5}, "`size` must be an integer >= 2; got 2.5"),
        ({"size": 4, "move_cost": -1.0}, "`move_cost` must be >= 0; got -1.0"),
    ],
)
def test_invalid_arguments_raise(kwargs, msg):
    with pytest.raises(ValueError, match=re.escape(msg)):
        DeepSea(**kwargs)


def test_make_env_names():
    assert make_env("deepsea", 7).size == 7
    with pytest.raises(ValueError, match=re.escape("`name` must be 'deepsea' or 'mountaincar'; got 'cartpole'")):
        make_env("cartpole")
