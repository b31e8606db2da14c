"""DeepSea (bsuite) as a pure-JAX environment with the randomised per-cell action mapping.

The agent starts in the top-left cell of an N x N grid and falls one row per step, choosing at each step to move one
column left or right. Moving right costs ``move_cost / N``; taking the "right" action in the bottom-right cell pays
+1. The only way to the treasure is to go right N times in a row, so the optimal return is ``1 - move_cost`` (0.99)
and a uniformly random (dithering) policy finds it with probability exactly 2^-N per episode.

With ``randomize_actions=True`` (bsuite's default) which of the two actions means "right" is drawn independently per
cell, so the effect of an action depends on the state: the agent cannot learn "always press 1".
"""

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp


class DeepSeaParams(NamedTuple):
    """Per-instance parameters: ``action_mapping[r, c]`` is the action that moves right in cell (r, c)."""

    action_mapping: jax.Array  # (N, N) int32 in {0, 1}


class DeepSeaState(NamedTuple):
    """Position of the agent: ``row`` in 0..N (N = episode over) and ``column`` in 0..N-1."""

    row: jax.Array
    column: jax.Array


class EnvStep(NamedTuple):
    """What :meth:`DeepSea.step` and :meth:`~combax.envs.MountainCar.step` return (no automatic reset).

    Attributes
    ----------
    obs : observation of the new state (for DeepSea, all zeros once the episode is over, as in bsuite).
    state : the new state.
    reward : float32 scalar.
    done : bool scalar, the episode ended with this step.
    success : bool scalar, this step reached the goal (DeepSea: the treasure; MountainCar: x >= 0.5).
    """

    obs: jax.Array
    state: NamedTuple
    reward: jax.Array
    done: jax.Array
    success: jax.Array


@dataclass(frozen=True, slots=True)
class DeepSea:
    """DeepSea of size N (bsuite ``deep_sea``, deterministic version).

    Parameters
    ----------
    size : N >= 2, the grid side and the episode length.
    move_cost : total cost of moving right N times; each right move costs ``move_cost / N``.
    randomize_actions : draw which action means "right" independently per cell (bsuite default). If False, action
        1 is always "right".

    Notes
    -----
    Observations are the one-hot (N*N,) float32 encoding of (row, column), and all zeros after the last step.
    ``reset``/``step`` are pure functions of their arguments, so they jit and vmap (over keys, states, actions and
    params). ``step`` does not reset; the training loop does (see :mod:`combax.adapters.exploration`).

    References
    ----------
    I. Osband et al., "Behaviour Suite for Reinforcement Learning", ICLR 2020, arXiv:1908.03568 (``deep_sea``).
    """

    size: int = 10
    move_cost: float = 0.01
    randomize_actions: bool = True

    def __post_init__(self):
        if int(self.size) != self.size or self.size < 2:
            raise ValueError(f"`size` must be an integer >= 2; got {self.size!r}")
        if not self.move_cost >= 0:
            raise ValueError(f"`move_cost` must be >= 0; got {self.move_cost!r}")

    @property
    def num_actions(self) -> int:
        return 2

    @property
    def obs_dim(self) -> int:
        return self.size * self.size

    @property
    def max_steps(self) -> int:
        """Episode length (every episode lasts exactly N steps)."""
        return self.size

    @property
    def optimal_return(self) -> float:
        return 1.0 - self.move_cost

    def default_params(self, key: jax.Array) -> DeepSeaParams:
        """Draw the per-cell action mapping from ``key`` (all ones if ``randomize_actions`` is False)."""
        n = self.size
        if self.randomize_actions:
            mapping = jax.random.bernoulli(key, 0.5, (n, n)).astype(jnp.int32)
        else:
            mapping = jnp.ones((n, n), jnp.int32)
        return DeepSeaParams(action_mapping=mapping)

    def observation(self, state: DeepSeaState) -> jax.Array:
        n = self.size
        idx = state.row * n + state.column
        live = state.row < n
        return jnp.where(live, jax.nn.one_hot(idx, n * n, dtype=jnp.float32), 0.0)

    def reset(self, key: jax.Array, params: DeepSeaParams) -> tuple[jax.Array, DeepSeaState]:
        """Start in the top-left cell (``key`` and ``params`` are unused: the start is deterministic)."""
        del key, params
        state = DeepSeaState(row=jnp.int32(0), column=jnp.int32(0))
        return self.observation(state), state

    def right_action(self, state: DeepSeaState, params: DeepSeaParams) -> jax.Array:
        """The action that moves right from ``state`` (the optimal action everywhere on the diagonal)."""
        row = jnp.minimum(state.row, self.size - 1)
        return params.action_mapping[row, state.column]

    def step(self, key: jax.Array, state: DeepSeaState, action: jax.Array, params: DeepSeaParams) -> EnvStep:
        """One transition; returns an :class:`EnvStep`. ``key`` is unused (the dynamics are deterministic)."""
        del key
        n = self.size
        go_right = action == self.right_action(state, params)
        success = go_right & (state.column == n - 1)
        reward = success.astype(jnp.float32) - go_right.astype(jnp.float32) * (self.move_cost / n)
        column = jnp.clip(state.column + jnp.where(go_right, 1, -1), 0, n - 1).astype(jnp.int32)
        new = DeepSeaState(row=(state.row + 1).astype(jnp.int32), column=column)
        done = new.row >= n
        return EnvStep(self.observation(new), new, reward.astype(jnp.float32), done, success)
