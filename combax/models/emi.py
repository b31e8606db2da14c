"""EMI: state/action embeddings with linear dynamics, Jensen-Shannon MI critics, KL prior and intrinsic rewards.

The embedding loss (Kim et al., ICML 2019, §3; the original implementation's weights) is

.. math::

    e &= \\phi(s') - \\phi(s) - \\psi(a) - \\alpha(s, a) \\\\
    L &= \\overline{\\|e\\|^2} + \\lambda_{err} \\overline{\\|\\alpha\\|^2}
        - \\lambda_{MI,a} \\hat I_{JSD}(\\psi(a); [\\phi(s'), \\phi(s)])
        - \\lambda_{MI,s} \\hat I_{JSD}(\\phi(s'); [\\phi(s), \\psi(a)])
        + \\lambda_{kl} \\mathrm{KL}(\\mathcal N(\\mu_\\psi, \\Sigma_\\psi) \\| \\mathcal N(0, I))

with :math:`\\hat I_{JSD}(X; Y) = E_{joint}[-\\mathrm{softplus}(-T)] - E_{marginal}[\\mathrm{softplus}(T)]`; the
minibatch is split in half, the first half gives the joint samples and the marginal samples pair the first half's
contexts with the second half's psi (or phi'). The intrinsic reward is the embedding-space prediction error
``eta * ||e||^2`` computed with the parameters from before the iteration's embedding update, or the relative
diversity reward of the MuJoCo scripts.

Costs per minibatch of B transitions: O(B * (|S| * 64 + 64 * 256)) for the networks, O(d^3) for the prior; the
diversity reward is O(B^2 d).

References
----------
H. Kim, J. Kim, Y. Jeong, S. Levine, H. O. Song, "EMI: Exploration with Mutual Information", ICML 2019,
arXiv:1810.01176. Original code: github.com/snu-mllab/EMI.
R. D. Hjelm et al., "Learning deep representations by mutual information estimation and maximization" (JSD bound),
ICLR 2019, arXiv:1808.06670.
"""

from dataclasses import dataclass
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax.training.train_state import TrainState


@dataclass(frozen=True, slots=True)
class EMIConfig:
    """EMI hyperparameters; the defaults are the original's Atari (residual-reward) setting.

    Attributes
    ----------
    d : embedding dimension (2 in the paper; 8-16 is worth trying on grid worlds).
    state_hidden : MLP widths of phi and of alpha's state branch ((64, 32) in the original).
    action_hidden : hidden width of psi (64). error_hidden : hidden width of alpha's head (256).
    critic_hidden : MLP widths of the critics T_a and T_s ((64, 64)).
    lam_err, lam_mi_a, lam_mi_s, lam_kl : loss weights (Atari: 1e2, 0.1, 0.1, 0.5; MuJoCo: 1e4, 0.05, 0.05, 0.1).
    eta : scale of the residual reward (1e-3).
    reward : ``"residual"`` (eta ||e||^2) or ``"diversity"`` (relative kernel density, bandwidth ``bandwidth``).
    lr, epochs, minibatch : embedding optimiser (Adam 1e-3, 3 epochs, 512 per minibatch).
    """

    d: int = 2
    state_hidden: tuple[int, ...] = (64, 32)
    action_hidden: int = 64
    error_hidden: int = 256
    critic_hidden: tuple[int, ...] = (64, 64)
    lam_err: float = 1e2
    lam_mi_a: float = 0.1
    lam_mi_s: float = 0.1
    lam_kl: float = 0.5
    eta: float = 1e-3
    reward: str = "residual"
    bandwidth: float = 5.0
    lr: float = 1e-3
    epochs: int = 3
    minibatch: int = 512

    def __post_init__(self):
        if int(self.d) != self.d or self.d < 1:
            raise ValueError(f"`d` must be a positive integer; got {self.d!r}")
        if self.reward not in ("residual", "diversity"):
            raise ValueError(f"`reward` must be 'residual' or 'diversity'; got {self.reward!r}")
        if self.minibatch < 2 or self.minibatch % 2:
            raise ValueError(f"`minibatch` must be an even integer >= 2 (it is split in half); got {self.minibatch}")


class EMIOutputs(NamedTuple):
    """Embeddings of a batch: phi(s), phi(s'), psi(a), alpha(s, a), each (B, d)."""

    phi: jax.Array
    phi_next: jax.Array
    psi: jax.Array
    alpha: jax.Array


class _MLP(nn.Module):
    widths: tuple[int, ...]
    out: int | None = None

    @nn.compact
    def __call__(self, x):
        for w in self.widths:
            x = nn.relu(nn.Dense(w)(x))
        return nn.Dense(self.out)(x) if self.out is not None else x


class EMINetworks(nn.Module):
    """phi: S -> R^d, psi: A -> R^d (one-hot actions), alpha: S x A -> R^d, critics T_a and T_s.

    ``__call__(s, a_onehot, s_next)`` returns :class:`EMIOutputs`; ``critics(out)`` returns the critic values on the
    joint and marginal halves ``(ta_joint, ta_marg, ts_joint, ts_marg)``, each (B // 2,).
    """

    config: EMIConfig

    def setup(self):
        c = self.config
        self.phi = _MLP(tuple(c.state_hidden), c.d)
        self.psi = _MLP((c.action_hidden,), c.d)
        self.alpha_state = _MLP(tuple(c.state_hidden))
        self.alpha_head = _MLP((c.error_hidden,), c.d)
        self.t_a = _MLP(tuple(c.critic_hidden), 1)
        self.t_s = _MLP(tuple(c.critic_hidden), 1)

    def __call__(self, s, a_onehot, s_next):
        alpha = self.alpha_head(jnp.concatenate([self.alpha_state(s), a_onehot], axis=-1))
        return EMIOutputs(self.phi(s), self.phi(s_next), self.psi(a_onehot), alpha)

    def critics(self, out: EMIOutputs):
        h = out.phi.shape[0] // 2
        phi, phi_n, psi = out.phi[:h], out.phi_next[:h], out.psi[:h]
        ta_joint = self.t_a(jnp.concatenate([psi, phi_n, phi], -1))[:, 0]
        ta_marg = self.t_a(jnp.concatenate([out.psi[h : 2 * h], phi_n, phi], -1))[:, 0]
        ts_joint = self.t_s(jnp.concatenate([phi_n, phi, psi], -1))[:, 0]
        ts_marg = self.t_s(jnp.concatenate([out.phi_next[h : 2 * h], phi, psi], -1))[:, 0]
        return ta_joint, ta_marg, ts_joint, ts_marg

    def init_all(self, s, a_onehot, s_next):
        return self.critics(self(s, a_onehot, s_next))


def jsd_mi(t_joint, t_marginal):
    """Jensen-Shannon MI lower bound (f-GAN / Deep InfoMax form).

    .. math:: \\hat I = E_{joint}[-\\mathrm{softplus}(-T)] - E_{marg}[\\mathrm{softplus}(T)]

    Equal to -2 log 2 at T = 0 and never above 0; its supremum over critics is 2 JSD - 2 log 2.
    """
    return jnp.mean(-jax.nn.softplus(-t_joint)) - jnp.mean(jax.nn.softplus(t_marginal))


def gaussian_kl_prior(psi, eig_floor: float = 1e-6):
    """KL(N(mu, Sigma) || N(0, I)) of the Gaussian fitted to the rows of ``psi`` (B, d).

    Sample mean and unbiased covariance, symmetrised, eigenvalues clamped at ``eig_floor``:
    ``0.5 * (tr Sigma + ||mu||^2 - d - log det Sigma)``. Zero for a batch with zero mean and identity covariance.
    """
    b, d = psi.shape
    mu = psi.mean(0)
    x = psi - mu
    cov = x.T @ x / (b - 1)
    eig = jnp.maximum(jnp.linalg.eigvalsh(0.5 * (cov + cov.T)), eig_floor)
    return 0.5 * (eig.sum() + mu @ mu - d - jnp.log(eig).sum())


class EMILossTerms(NamedTuple):
    loss: jax.Array
    residual: jax.Array
    error: jax.Array
    mi_action: jax.Array
    mi_state: jax.Array
    kl: jax.Array


def emi_loss(params, net: EMINetworks, s, a_onehot, s_next) -> tuple[jax.Array, EMILossTerms]:
    """The total embedding loss L of the module docstring on one minibatch (B even); returns ``(L, terms)``."""
    c = net.config
    out = net.apply(params, s, a_onehot, s_next)
    e = out.phi_next - out.phi - out.psi - out.alpha
    res = jnp.mean(jnp.sum(e**2, -1))
    err = jnp.mean(jnp.sum(out.alpha**2, -1))
    ta_j, ta_m, ts_j, ts_m = net.apply(params, out, method=EMINetworks.critics)
    mi_a, mi_s = jsd_mi(ta_j, ta_m), jsd_mi(ts_j, ts_m)
    kl = gaussian_kl_prior(out.psi)
    loss = res + c.lam_err * err - c.lam_mi_a * mi_a - c.lam_mi_s * mi_s + c.lam_kl * kl
    return loss, EMILossTerms(loss, res, err, mi_a, mi_s, kl)


def residual_reward(params, net: EMINetworks, s, a_onehot, s_next):
    """``eta * ||phi(s') - phi(s) - psi(a) - alpha(s, a)||^2`` per transition, shape (B,)."""
    out = net.apply(params, s, a_onehot, s_next)
    e = out.phi_next - out.phi - out.psi - out.alpha
    return net.config.eta * jnp.sum(e**2, -1)


def diversity_reward(params, net: EMINetworks, s, a_onehot, s_next):
    """Relative diversity ``-(Kbar(phi(s')) - Kbar(phi(s)))`` with a Gaussian kernel over the batch's phi(s).

    ``Kbar(x) = mean_j exp(-||x - phi(s_j)||^2 / (2 h^2))`` with bandwidth h = ``config.bandwidth``; shape (B,).
    """
    out = net.apply(params, s, a_onehot, s_next)
    h2 = 2.0 * net.config.bandwidth**2

    def kbar(x):
        d2 = jnp.sum((x[:, None, :] - out.phi[None, :, :]) ** 2, -1)
        return jnp.exp(-d2 / h2).mean(1)

    return -(kbar(out.phi_next) - kbar(out.phi))


def intrinsic_reward(params, net: EMINetworks, s, a_onehot, s_next):
    """The reward selected by ``config.reward``."""
    fn = residual_reward if net.config.reward == "residual" else diversity_reward
    return fn(params, net, s, a_onehot, s_next)


def make_emi_state(key, obs_dim: int, num_actions: int, config: EMIConfig) -> TrainState:
    """A flax ``TrainState`` holding all EMI networks and their Adam state."""
    net = EMINetworks(config)
    b = 4
    params = net.init(
        key,
        jnp.zeros((b, obs_dim)),
        jnp.zeros((b, num_actions)),
        jnp.zeros((b, obs_dim)),
        method=EMINetworks.init_all,
    )
    return TrainState.create(apply_fn=net.apply, params=params, tx=optax.adam(config.lr))


def emi_update(state: TrainState, net: EMINetworks, s, a_onehot, s_next, key):
    """``config.epochs`` passes of shuffled minibatches over the batch (B rows), one Adam step each.

    The minibatch is ``min(config.minibatch, B)`` rounded down to even; rows that do not fill a minibatch are
    dropped in that epoch (a fresh shuffle each epoch). Returns ``(state, terms of the last minibatch)``.
    """
    c = net.config
    s, a_onehot, s_next = jnp.asarray(s), jnp.asarray(a_onehot), jnp.asarray(s_next)
    n = s.shape[0]
    mb = min(c.minibatch, n) // 2 * 2
    k = n // mb
    grad_fn = jax.value_and_grad(emi_loss, has_aux=True)

    def step(st, idx):
        (_, terms), g = grad_fn(st.params, net, s[idx], a_onehot[idx], s_next[idx])
        return st.apply_gradients(grads=g), terms

    def epoch(st, kk):
        perm = jax.random.permutation(kk, n)[: k * mb].reshape(k, mb)
        return jax.lax.scan(step, st, perm)

    state, terms = jax.lax.scan(epoch, state, jax.random.split(key, c.epochs))
    return state, jax.tree_util.tree_map(lambda t: t[-1, -1], terms)
