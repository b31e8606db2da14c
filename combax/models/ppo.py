"""PPO in JAX/Flax: an actor-critic MLP with an optional intrinsic value head, GAE and the clipped PPO update.

Pure functions only; the rollout loop that feeds them lives in :mod:`combax.adapters.exploration` (purejaxrl style:
everything under one ``jit`` with ``lax.scan``).

References
----------
J. Schulman et al., "Proximal Policy Optimization Algorithms", arXiv:1707.06347.
J. Schulman et al., "High-Dimensional Continuous Control Using Generalized Advantage Estimation", arXiv:1506.02438.
C. Lu et al., "Discovered Policy Optimisation" (purejaxrl), NeurIPS 2022, arXiv:2210.05639.
"""

from dataclasses import dataclass
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training.train_state import TrainState


@dataclass(frozen=True, slots=True)
class PPOConfig:
    """PPO hyperparameters (one seed; the adapter vmaps over seeds).

    Attributes
    ----------
    num_envs : parallel environments per seed.
    num_steps : rollout length per environment per update (batch = num_envs * num_steps transitions).
    update_epochs, num_minibatches : passes over the batch and minibatches per pass.
    lr : Adam learning rate; max_grad_norm : global gradient-norm clip.
    gamma, gae_lambda : discount and GAE lambda of the extrinsic return.
    clip_eps : PPO ratio clip (also used for the clipped value loss).
    ent_coef, vf_coef : entropy bonus and value-loss weights.
    hidden : widths of the tanh MLP trunks (actor and critic have separate trunks).
    """

    num_envs: int = 32
    num_steps: int = 16
    update_epochs: int = 4
    num_minibatches: int = 4
    lr: float = 1e-3
    max_grad_norm: float = 0.5
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_eps: float = 0.2
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    hidden: tuple[int, ...] = (64, 64)

    def __post_init__(self):
        for name in ("num_envs", "num_steps", "update_epochs", "num_minibatches"):
            v = getattr(self, name)
            if int(v) != v or v < 1:
                raise ValueError(f"`{name}` must be a positive integer; got {v!r}")
        if (self.num_envs * self.num_steps) % self.num_minibatches:
            raise ValueError(
                f"`num_minibatches` must divide num_envs * num_steps = {self.num_envs * self.num_steps}; "
                f"got {self.num_minibatches}"
            )
        if not 0 <= self.gamma <= 1 or not 0 <= self.gae_lambda <= 1:
            raise ValueError(f"`gamma` and `gae_lambda` must lie in [0, 1]; got {self.gamma}, {self.gae_lambda}")

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.num_steps


class ActorCritic(nn.Module):
    """Categorical policy and value head(s) on separate tanh MLP trunks.

    ``__call__(obs)`` returns ``(logits, v_ext, v_int)``; ``v_int`` is zeros unless ``int_head`` is set.
    """

    num_actions: int
    hidden: tuple[int, ...] = (64, 64)
    int_head: bool = False

    @nn.compact
    def __call__(self, obs):
        orth = nn.initializers.orthogonal
        a = obs
        for w in self.hidden:
            a = nn.tanh(nn.Dense(w, kernel_init=orth(np.sqrt(2)))(a))
        logits = nn.Dense(self.num_actions, kernel_init=orth(0.01))(a)
        c = obs
        for w in self.hidden:
            c = nn.tanh(nn.Dense(w, kernel_init=orth(np.sqrt(2)))(c))
        v_ext = nn.Dense(1, kernel_init=orth(1.0))(c)[..., 0]
        v_int = nn.Dense(1, kernel_init=orth(1.0))(c)[..., 0] if self.int_head else jnp.zeros_like(v_ext)
        return logits, v_ext, v_int


def make_actor_critic_state(key, obs_dim: int, num_actions: int, config: PPOConfig, int_head: bool = False):
    """A flax ``TrainState`` for :class:`ActorCritic` with Adam and gradient clipping."""
    net = ActorCritic(num_actions=num_actions, hidden=tuple(config.hidden), int_head=int_head)
    params = net.init(key, jnp.zeros((obs_dim,), jnp.float32))
    tx = optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optax.adam(config.lr, eps=1e-5))
    return TrainState.create(apply_fn=net.apply, params=params, tx=tx)


def gae(rewards, values, dones, last_value, gamma: float, lam: float):
    """Generalised advantage estimates over a rollout of T steps (leading axis time).

    .. math::

        \\delta_t = r_t + \\gamma (1 - d_t) V(s_{t+1}) - V(s_t), \\qquad
        A_t = \\delta_t + \\gamma \\lambda (1 - d_t) A_{t+1}

    Parameters
    ----------
    rewards, values, dones : (T, ...) arrays; ``dones[t]`` is True if the episode ended with step t (pass zeros for
        a non-episodic return).
    last_value : (...) value of the observation after the last step.

    Returns
    -------
    (advantages, targets) with ``targets = advantages + values``. O(T) sequential, vectorised over the rest.
    """
    not_done = 1.0 - dones.astype(jnp.float32)
    next_values = jnp.concatenate([values[1:], last_value[None]], axis=0)
    deltas = rewards + gamma * not_done * next_values - values

    def back(carry, x):
        delta, nd = x
        carry = delta + gamma * lam * nd * carry
        return carry, carry

    _, adv = jax.lax.scan(back, jnp.zeros_like(last_value), (deltas, not_done), reverse=True)
    return adv, adv + values


class PPOBatch(NamedTuple):
    """Flattened rollout for one PPO update (leading axis = num_envs * num_steps)."""

    obs: jax.Array
    action: jax.Array
    log_prob: jax.Array
    value_ext: jax.Array
    value_int: jax.Array
    advantage: jax.Array  # already the weighted sum of the extrinsic and intrinsic advantages
    target_ext: jax.Array
    target_int: jax.Array


def ppo_loss(params, apply_fn, batch: PPOBatch, config: PPOConfig, int_head: bool):
    """Clipped surrogate + clipped value loss(es) - entropy bonus; returns ``(loss, (value_loss, actor, entropy))``."""
    logits, v_ext, v_int = apply_fn(params, batch.obs)
    logp_all = jax.nn.log_softmax(logits)
    logp = jnp.take_along_axis(logp_all, batch.action[:, None], axis=-1)[:, 0]
    entropy = -(jnp.exp(logp_all) * logp_all).sum(-1).mean()

    def value_loss(v, v_old, target):
        v_clip = v_old + jnp.clip(v - v_old, -config.clip_eps, config.clip_eps)
        return 0.5 * jnp.maximum((v - target) ** 2, (v_clip - target) ** 2).mean()

    v_loss = value_loss(v_ext, batch.value_ext, batch.target_ext)
    if int_head:
        v_loss = v_loss + value_loss(v_int, batch.value_int, batch.target_int)
    adv = (batch.advantage - batch.advantage.mean()) / (batch.advantage.std() + 1e-8)
    ratio = jnp.exp(logp - batch.log_prob)
    actor = -jnp.minimum(ratio * adv, jnp.clip(ratio, 1 - config.clip_eps, 1 + config.clip_eps) * adv).mean()
    loss = actor + config.vf_coef * v_loss - config.ent_coef * entropy
    return loss, (v_loss, actor, entropy)


def ppo_update(train_state: TrainState, batch: PPOBatch, key, config: PPOConfig, int_head: bool = False):
    """``update_epochs`` passes of shuffled minibatch Adam steps on :func:`ppo_loss`.

    Returns ``(train_state, metrics)`` with the last minibatch's ``(loss, value_loss, actor_loss, entropy)``.
    Jittable; ``config`` and ``int_head`` are static (close over them).
    """
    n = batch.obs.shape[0]
    mb = n // config.num_minibatches
    grad_fn = jax.value_and_grad(ppo_loss, has_aux=True)

    def minibatch_step(ts, idx):
        sub = jax.tree_util.tree_map(lambda x: x[idx], batch)
        (loss, aux), grads = grad_fn(ts.params, ts.apply_fn, sub, config, int_head)
        return ts.apply_gradients(grads=grads), (loss, *aux)

    def epoch(ts, k):
        perm = jax.random.permutation(k, n)[: mb * config.num_minibatches].reshape(config.num_minibatches, mb)
        return jax.lax.scan(minibatch_step, ts, perm)

    train_state, metrics = jax.lax.scan(epoch, train_state, jax.random.split(key, config.update_epochs))
    return train_state, jax.tree_util.tree_map(lambda m: m[-1, -1], metrics)
