"""Random Network Distillation: the reference intrinsic reward.

A fixed, randomly initialised target network f and a trained predictor g; the intrinsic reward of an observation
is the prediction error

.. math:: r_{int}(s') = \\| g(s') - f(s') \\|^2

which stays high on observations the predictor has not been trained on (novel states). Cost O(B * |S| * width) per
batch.

References
----------
Y. Burda, H. Edwards, A. Storkey, O. Klimov, "Exploration by Random Network Distillation", ICLR 2019,
arXiv:1810.12894; CleanRL ``ppo_rnd_envpool.py`` for the PPO wiring.
"""

from dataclasses import dataclass
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax.training.train_state import TrainState


@dataclass(frozen=True, slots=True)
class RNDConfig:
    """RND hyperparameters.

    Attributes
    ----------
    hidden : MLP widths of target and predictor; out_dim : feature dimension.
    lr, epochs, minibatch : predictor optimiser (Adam), passes over each rollout and minibatch size.
    update_proportion : fraction of each minibatch the predictor is trained on (CleanRL: 0.25), so that the
        reward does not vanish too fast in small state spaces.
    """

    hidden: tuple[int, ...] = (64, 64)
    out_dim: int = 16
    lr: float = 1e-3
    epochs: int = 3
    minibatch: int = 512
    update_proportion: float = 0.25

    def __post_init__(self):
        if not 0 < self.update_proportion <= 1:
            raise ValueError(f"`update_proportion` must lie in (0, 1]; got {self.update_proportion}")


class _MLP(nn.Module):
    widths: tuple[int, ...]
    out: int

    @nn.compact
    def __call__(self, x):
        for w in self.widths:
            x = nn.leaky_relu(nn.Dense(w, kernel_init=nn.initializers.orthogonal(jnp.sqrt(2.0)))(x))
        return nn.Dense(self.out, kernel_init=nn.initializers.orthogonal(jnp.sqrt(2.0)))(x)


class RNDNetworks(nn.Module):
    """``__call__(obs)`` returns ``(prediction, target)``, each (B, out_dim); the target is never trained."""

    config: RNDConfig

    def setup(self):
        c = self.config
        self.target = _MLP(tuple(c.hidden), c.out_dim)
        self.predictor = _MLP(tuple(c.hidden), c.out_dim)

    def __call__(self, obs):
        return self.predictor(obs), jax.lax.stop_gradient(self.target(obs))


class RNDTerms(NamedTuple):
    loss: jax.Array


def rnd_reward(params, net: RNDNetworks, obs):
    """``||g(obs) - f(obs)||^2`` per row, shape (B,)."""
    pred, target = net.apply(params, obs)
    return jnp.sum((pred - target) ** 2, -1)


def rnd_loss(params, net: RNDNetworks, obs, mask):
    """Masked mean squared prediction error (``mask`` selects the rows trained on)."""
    pred, target = net.apply(params, obs)
    err = jnp.mean((pred - target) ** 2, -1)
    return jnp.sum(err * mask) / jnp.maximum(mask.sum(), 1.0)


def make_rnd_state(key, obs_dim: int, config: RNDConfig) -> TrainState:
    """A flax ``TrainState`` for target + predictor; only the predictor moves (the target gets zero gradient)."""
    net = RNDNetworks(config)
    params = net.init(key, jnp.zeros((1, obs_dim)))
    # The target sits behind stop_gradient, so its gradient is exactly zero and Adam's step for it is
    # 0 / (0 + eps) = 0: a plain Adam never moves it. (optax.multi_transform with set_to_zero, the obvious way to
    # freeze it, made the seed-vmapped training chunk hang at run time on XLA CPU, jax 0.10.2.)
    return TrainState.create(apply_fn=net.apply, params=params, tx=optax.adam(config.lr))


def rnd_update(state: TrainState, net: RNDNetworks, obs, key):
    """``config.epochs`` shuffled passes of Adam steps on :func:`rnd_loss`; returns ``(state, RNDTerms)``."""
    c = net.config
    obs = jnp.asarray(obs)
    n = obs.shape[0]
    mb = min(c.minibatch, n)
    k = n // mb
    grad_fn = jax.value_and_grad(rnd_loss)

    def step(st, x):
        idx, kk = x
        mask = (jax.random.uniform(kk, (mb,)) < c.update_proportion).astype(jnp.float32)
        loss, g = grad_fn(st.params, net, obs[idx], mask)
        return st.apply_gradients(grads=g), RNDTerms(loss)

    def epoch(st, kk):
        k1, k2 = jax.random.split(kk)
        perm = jax.random.permutation(k1, n)[: k * mb].reshape(k, mb)
        return jax.lax.scan(step, st, (perm, jax.random.split(k2, k)))

    state, terms = jax.lax.scan(epoch, state, jax.random.split(key, c.epochs))
    return state, jax.tree_util.tree_map(lambda t: t[-1, -1], terms)
