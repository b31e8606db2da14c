"""PPO + intrinsic reward wiring: vmapped over seeds on DeepSea, PPO solves a tiny DeepSea, argument errors."""

import dataclasses

import jax
import numpy as np
import pytest

from combax.adapters.exploration import ExplorationConfig, default_config, run_exploration
from combax.envs import DeepSea, MountainCar
from combax.models.emi import EMIConfig
from combax.models.ppo import PPOConfig
from combax.models.rnd import RNDConfig

TINY_PPO = PPOConfig(num_envs=8, num_steps=8, num_minibatches=2, update_epochs=2, hidden=(32,))
TINY_EMI = EMIConfig(d=2, state_hidden=(16,), action_hidden=16, error_hidden=16, critic_hidden=(16,), minibatch=64)
TINY_RND = RNDConfig(hidden=(16,), out_dim=4, minibatch=64)


def _tiny(agent, **kw):
    return ExplorationConfig(agent=agent, ppo=TINY_PPO, emi=TINY_EMI, rnd=TINY_RND, updates_per_call=2, **kw)


def test_vmapped_train_runs_over_seeds_on_deepsea_5_and_matches_seed_by_seed():
    env = DeepSea(5)
    a = run_exploration(env, _tiny("emi"), seeds=[0, 1], total_steps=256, progress=False, vmap_seeds=True)
    assert a.episodes.shape == (2, 4)
    np.testing.assert_array_equal(a.steps[:, -1], [256, 256])
    # DeepSea episodes last exactly N steps: each of the 8 envs finishes floor(8 steps x 4 updates / 5) episodes
    assert a.n_episodes.sum(1).tolist() == [8 * (8 * 4 // 5)] * 2
    assert np.all(np.isfinite(a.int_reward)) and np.all(a.int_reward >= 0)
    assert all(x.shape[0] == 2 for x in jax.tree_util.tree_leaves(a.final_state.ac.params)), "seed axis leads"
    b = run_exploration(env, _tiny("emi"), seeds=[0, 1], total_steps=256, progress=False, vmap_seeds=False)
    np.testing.assert_array_equal(a.n_episodes, b.n_episodes)
    np.testing.assert_allclose(a.return_sum, b.return_sum, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(a.int_reward, b.int_reward, rtol=1e-3, atol=1e-6)


def test_rnd_wiring_runs_and_keeps_the_seed_axis():
    res = run_exploration(DeepSea(5), _tiny("rnd"), seeds=[0, 1], total_steps=256, progress=False)
    assert res.episodes.shape == (2, 4) and np.all(res.int_reward >= 0)
    assert all(x.shape[0] == 2 for x in jax.tree_util.tree_leaves(res.final_state.bonus.params))


def test_ppo_solves_tiny_deepsea():
    env = DeepSea(4)
    cfg = ExplorationConfig(agent="ppo", ppo=dataclasses.replace(TINY_PPO, num_envs=16), updates_per_call=10)
    res = run_exploration(env, cfg, seeds=[0, 1], episodes=800, progress=False)
    assert res.solved.all(), res.first_success_episode
    assert np.all(res.first_success_episode <= res.episodes[:, -1])
    assert np.all(res.first_success_step >= env.size) and np.all(res.first_success_step <= res.steps[:, -1])
    assert np.all(res.final_success_rate(200) > 0.3), "well above dithering's 2^-4"


def test_mountaincar_runs():
    res = run_exploration(MountainCar(), _tiny("emi"), seeds=1, total_steps=128, progress=False)
    assert res.env == "mountaincar" and res.steps[0, -1] == 128


@pytest.mark.parametrize(
    "kwargs,name",
    [({"agent": "dqn"}, "agent"), ({"updates_per_call": 0}, "updates_per_call"), ({"int_coef": -1.0}, "int_coef")],
)
def test_config_errors_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        ExplorationConfig(**kwargs)


def test_budget_and_seed_errors_name_the_argument():
    env = DeepSea(4)
    with pytest.raises(ValueError, match="`total_steps`"):
        run_exploration(env, _tiny("ppo"), seeds=1, progress=False)
    with pytest.raises(ValueError, match="`episodes`"):
        run_exploration(env, _tiny("ppo"), seeds=1, episodes=0, progress=False)
    with pytest.raises(ValueError, match="`seeds`"):
        run_exploration(env, _tiny("ppo"), seeds=[0.5], episodes=10, progress=False)
    with pytest.raises(ValueError, match="`agent`"):
        default_config("dqn")
    with pytest.raises(ValueError, match="`env`"):
        default_config("ppo", "atari")
