"""Sparse MountainCar: dynamics against an independent NumPy transcription of Gym's MountainCar-v0, goal reachable."""

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from combax.envs import MountainCar


def _gym_step(position, velocity, action):
    """OpenAI Gym ``MountainCarEnv.step`` (classic_control/mountain_car.py), transcribed in plain Python."""
    velocity += (action - 1) * 0.001 + math.cos(3 * position) * (-0.0025)
    velocity = min(max(velocity, -0.07), 0.07)
    position += velocity
    position = min(max(position, -1.2), 0.6)
    if position == -1.2 and velocity < 0:
        velocity = 0.0
    terminated = bool(position >= 0.5 and velocity >= 0)
    return position, velocity, terminated


def test_dynamics_match_gym_transcription():
    env = MountainCar(normalize_obs=False, max_steps=10_000)
    rng = np.random.default_rng(0)
    key = jax.random.PRNGKey(0)
    obs, state = env.reset(key, env.default_params(key))
    position, velocity = float(obs[0]), float(obs[1])
    assert -0.6 <= position <= -0.4 and velocity == 0.0
    step = jax.jit(env.step)
    for _ in range(300):
        a = int(rng.integers(3))
        out = step(key, state, jnp.int32(a), env.default_params(key))
        position, velocity, terminated = _gym_step(position, velocity, a)
        np.testing.assert_allclose(float(out.obs[0]), position, atol=2e-5)
        np.testing.assert_allclose(float(out.obs[1]), velocity, atol=2e-6)
        position, velocity = float(out.obs[0]), float(out.obs[1])  # resync float32 vs float64
        assert float(out.reward) == -1.0
        state = out.state


def _energy_pumping(state):
    return jnp.where(state.velocity >= 0, 2, 0)


def test_energy_pumping_policy_reaches_goal_and_random_policy_does_not():
    env = MountainCar()
    keys = jax.random.split(jax.random.PRNGKey(1), 64)
    params = env.default_params(keys[0])

    def episode(key, policy_kind):
        _, state = env.reset(key, params)

        def body(carry, k):
            state, done, success, t = carry
            a = jnp.where(policy_kind == 0, _energy_pumping(state), jax.random.randint(k, (), 0, 3))
            out = env.step(k, state, a, params)
            state = jax.tree_util.tree_map(lambda x, y: jnp.where(done, x, y), state, out.state)
            return (state, done | out.done, success | (out.success & ~done), t + (~done)), None

        init = (state, jnp.bool_(False), jnp.bool_(False), jnp.int32(0))
        (_, done, success, t), _ = jax.lax.scan(body, init, jax.random.split(key, env.max_steps))
        return done, success, t

    run = jax.jit(jax.vmap(episode, in_axes=(0, None)))
    done, success, t = run(keys, 0)
    assert bool(done.all()) and bool(success.all()), "the energy-pumping controller always reaches x >= 0.5"
    assert int(t.max()) < env.max_steps
    done, success, t = run(keys, 1)
    assert bool(done.all()) and int(t.min()) == env.max_steps, "random episodes hit the time limit"
    assert float(success.mean()) < 0.05


def test_goal_reward_mode_and_time_limit():
    env = MountainCar(reward="goal", max_steps=3)
    key = jax.random.PRNGKey(0)
    params = env.default_params(key)
    _, state = env.reset(key, params)
    for t in range(3):
        out = env.step(key, state, jnp.int32(1), params)
        assert float(out.reward) == 0.0
        assert bool(out.done) == (t == 2)
        state = out.state
    near_goal = state._replace(position=jnp.float32(0.499), velocity=jnp.float32(0.05), t=jnp.int32(0))
    out = env.step(key, near_goal, jnp.int32(2), params)
    assert bool(out.success) and bool(out.done) and float(out.reward) == 1.0


def test_normalized_observation_range():
    env = MountainCar()
    key = jax.random.PRNGKey(0)
    obs, _ = env.reset(key, env.default_params(key))
    assert obs.shape == (2,) and obs.dtype == jnp.float32
    assert -0.34 <= float(obs[0]) <= -0.11 and float(obs[1]) == 0.0


@pytest.mark.parametrize(
    ("kwargs", "msg"),
    [
        ({"reward": "dense"}, "`reward` must be one of ('step_cost', 'goal'); got 'dense'"),
        ({"max_steps": 0}, "`max_steps` must be a positive integer; got 0"),
    ],
)
def test_invalid_arguments_raise(kwargs, msg):
    with pytest.raises(ValueError, match=re.escape(msg)):
        MountainCar(**kwargs)
