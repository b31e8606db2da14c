"""Sparse-reward MountainCar as a pure-JAX environment (classic-control dynamics, gymnax ``MountainCar-v0``).

An under-powered car in a valley must rock back and forth to reach the flag at x >= 0.5. With the default
``reward="step_cost"`` every step pays -1 until the goal or the 200-step limit, so a policy that never reaches the
goal sees the same return every episode: the reward carries no gradient toward the goal (sparse). ``reward="goal"``
pays +1 on reaching the goal and 0 otherwise.
"""

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp

from combax.envs.deepsea import EnvStep

_REWARDS = ("step_cost", "goal")


class MountainCarParams(NamedTuple):
    """MountainCar has no per-instance parameters (kept so every env has the same ``reset``/``step`` signature)."""


class MountainCarState(NamedTuple):
    position: jax.Array
    velocity: jax.Array
    t: jax.Array


@dataclass(frozen=True, slots=True)
class MountainCar:
    """MountainCar-v0 with a sparse reward.

    .. math::

        v_{t+1} = \\mathrm{clip}(v_t + (a - 1) F - g \\cos(3 x_t), -v_{max}, v_{max}), \\quad
        x_{t+1} = \\mathrm{clip}(x_t + v_{t+1}, x_{min}, x_{max})

    with F = 0.001, g = 0.0025, v_max = 0.07, x in [-1.2, 0.6], and v set to 0 when the car hits the left wall. The
    episode ends at x >= 0.5 (success) or after ``max_steps`` steps. Actions: 0 push left, 1 no push, 2 push right.

    Parameters
    ----------
    max_steps : time limit (200 in MountainCar-v0).
    reward : ``"step_cost"`` (-1 per step, MountainCar-v0) or ``"goal"`` (+1 at the goal, else 0).
    normalize_obs : observe ``((x + 0.3) / 0.9, v / 0.07)``, both in [-1, 1], instead of the raw ``(x, v)``.

    Notes
    -----
    The start position is uniform in [-0.6, -0.4] with zero velocity. A uniformly random policy essentially never
    reaches the goal within 200 steps.

    References
    ----------
    A. W. Moore, "Efficient memory-based learning for robot control", PhD thesis, Cambridge, 1990; the constants are
    those of OpenAI Gym / gymnax ``MountainCar-v0``.
    """

    max_steps: int = 200
    reward: str = "step_cost"
    normalize_obs: bool = True
    force: float = 0.001
    gravity: float = 0.0025
    max_speed: float = 0.07
    min_position: float = -1.2
    max_position: float = 0.6
    goal_position: float = 0.5

    def __post_init__(self):
        if self.reward not in _REWARDS:
            raise ValueError(f"`reward` must be one of {_REWARDS}; got {self.reward!r}")
        if int(self.max_steps) != self.max_steps or self.max_steps < 1:
            raise ValueError(f"`max_steps` must be a positive integer; got {self.max_steps!r}")

    @property
    def num_actions(self) -> int:
        return 3

    @property
    def obs_dim(self) -> int:
        return 2

    def default_params(self, key: jax.Array) -> MountainCarParams:
        del key
        return MountainCarParams()

    def observation(self, state: MountainCarState) -> jax.Array:
        if self.normalize_obs:
            return jnp.stack([(state.position + 0.3) / 0.9, state.velocity / self.max_speed]).astype(jnp.float32)
        return jnp.stack([state.position, state.velocity]).astype(jnp.float32)

    def reset(self, key: jax.Array, params: MountainCarParams) -> tuple[jax.Array, MountainCarState]:
        del params
        position = jax.random.uniform(key, (), jnp.float32, -0.6, -0.4)
        state = MountainCarState(position=position, velocity=jnp.float32(0.0), t=jnp.int32(0))
        return self.observation(state), state

    def step(self, key: jax.Array, state: MountainCarState, action: jax.Array, params: MountainCarParams) -> EnvStep:
        """One transition; returns an :class:`~combax.envs.deepsea.EnvStep`. ``key`` is unused."""
        del key, params
        velocity = state.velocity + (action - 1) * self.force - jnp.cos(3 * state.position) * self.gravity
        velocity = jnp.clip(velocity, -self.max_speed, self.max_speed)
        position = jnp.clip(state.position + velocity, self.min_position, self.max_position)
        velocity = jnp.where((position <= self.min_position) & (velocity < 0), 0.0, velocity)
        t = state.t + 1
        success = position >= self.goal_position
        done = success | (t >= self.max_steps)
        if self.reward == "step_cost":
            reward = jnp.float32(-1.0)
        else:
            reward = success.astype(jnp.float32)
        new = MountainCarState(position=position.astype(jnp.float32), velocity=velocity.astype(jnp.float32), t=t)
        return EnvStep(self.observation(new), new, reward, done, success)
