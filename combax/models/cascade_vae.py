"""CascadeVAE (Jeong & Song, ICML 2019): the dSprites encoder / decoder, the beta-VAE loss with a per-dimension beta,
the cascade schedule, and the decoding of every (z, category) pair that gives the discrete step its unary costs.

Pure JAX / Flax (``flax.linen``: parameters are plain pytrees). The discrete step itself (a solver call) lives in
:mod:`combax.adapters.vae`; nothing here imports :mod:`combax.solvers`.

Reference: Y. Jeong, H. O. Song, "Learning discrete and continuous factors of data via alternating disentanglement",
ICML 2019, arXiv:1905.09432. Layout and schedule follow ``specs/cascade_vae.md`` §1, §3, §4.
"""

from dataclasses import dataclass
from typing import Literal

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

ModelKind = Literal["cascade", "cascade-c", "betavae"]


@dataclass(frozen=True, slots=True)
class VAEConfig:
    """Architecture of the dSprites VAE (spec §4), scaled by ``image_size``.

    Attributes
    ----------
    image_size : int
        Side of the square binary input; a multiple of 16 (64 is the original; four stride-2 convs reach
        ``image_size / 16``).
    n_continuous : int
        m, the number of continuous latents (factorized Gaussian posterior, sigma = softplus).
    n_categories : int
        S, the size of the one-hot discrete latent fed to the decoder; 0 for a purely continuous model.
    conv_features : tuple of int
        Channels of the four encoder convs (the decoder mirrors them).
    hidden : int
        Width of the fully connected layer on each side.
    """

    image_size: int = 64
    n_continuous: int = 6
    n_categories: int = 3
    conv_features: tuple[int, int, int, int] = (32, 32, 64, 64)
    hidden: int = 256

    def __post_init__(self):
        if self.image_size % 16 or self.image_size < 16:
            raise ValueError(f"`image_size` must be a positive multiple of 16; got {self.image_size}")
        if self.n_continuous < 1:
            raise ValueError(f"`n_continuous` must be at least 1; got {self.n_continuous}")
        if self.n_categories < 0 or self.n_categories == 1:
            raise ValueError(f"`n_categories` must be 0 (no discrete latent) or at least 2; got {self.n_categories}")
        if len(self.conv_features) != 4 or min(self.conv_features) < 1:
            raise ValueError(f"`conv_features` must be 4 positive channel counts; got {self.conv_features}")
        if self.hidden < 1:
            raise ValueError(f"`hidden` must be at least 1; got {self.hidden}")


@dataclass(frozen=True, slots=True)
class CascadeSchedule:
    """The per-dimension beta_j(t) and the discrete warm-up of spec §3.

    ``kind="cascade"`` (CascadeVAE): ``p = t // interval``; the first ``p + 1`` dimensions are open (beta_low) while
    ``p < warmup_stages``, then ``min(p, m)``; the discrete latent is on from ``t >= warmup_stages * interval``.
    ``kind="cascade-c"`` (CascadeVAE-C): ``min(p, m - 1) + 1`` open dimensions, no discrete latent.
    ``kind="betavae"``: every dimension at ``beta`` for all t, no discrete latent.

    With the original numbers (m = 6, interval = 20,000, warmup_stages = 4) the CascadeVAE timeline is 1, 2, 3, 4, 4, 5
    open dimensions over the first six 20k stages and all 6 from 120k; the discrete step starts at 80k.
    """

    kind: ModelKind
    n_continuous: int
    interval: int = 20_000
    beta_high: float = 10.0
    beta_low: float = 0.1
    warmup_stages: int = 4
    beta: float = 4.0

    def __post_init__(self):
        if self.kind not in ("cascade", "cascade-c", "betavae"):
            raise ValueError(f"`kind` must be 'cascade', 'cascade-c' or 'betavae'; got {self.kind!r}")
        if self.interval < 1:
            raise ValueError(f"`interval` must be at least 1; got {self.interval}")
        if self.n_continuous < 1:
            raise ValueError(f"`n_continuous` must be at least 1; got {self.n_continuous}")
        if self.warmup_stages < 0:
            raise ValueError(f"`warmup_stages` must be non-negative; got {self.warmup_stages}")

    def n_open(self, t: int) -> int:
        """Number of dimensions at beta_low at iteration ``t`` (always the first ones)."""
        m, p = self.n_continuous, int(t) // self.interval
        if self.kind == "betavae":
            return m
        if self.kind == "cascade-c":
            return min(p, m - 1) + 1
        return min(p + 1, m) if p < self.warmup_stages else min(p, m)

    def betas(self, t: int) -> np.ndarray:
        """(m,) float32 beta_j(t)."""
        if self.kind == "betavae":
            return np.full(self.n_continuous, self.beta, dtype=np.float32)
        out = np.full(self.n_continuous, self.beta_high, dtype=np.float32)
        out[: self.n_open(t)] = self.beta_low
        return out

    def discrete_on(self, t: int) -> bool:
        """Whether the discrete step runs at iteration ``t`` (CascadeVAE only, after the warm-up)."""
        return self.kind == "cascade" and int(t) >= self.warmup_stages * self.interval


def _he():
    return nn.initializers.variance_scaling(2.0, "fan_in", "truncated_normal")


class Encoder(nn.Module):
    """x (n, H, W, 1) -> (mu, sigma), each (n, m)."""

    config: VAEConfig

    @nn.compact
    def __call__(self, x):
        h = x
        for f in self.config.conv_features:
            h = nn.relu(nn.Conv(f, (4, 4), strides=(2, 2), padding="SAME", kernel_init=_he())(h))
        h = h.reshape(h.shape[0], -1)
        h = nn.relu(nn.Dense(self.config.hidden, kernel_init=_he())(h))
        out = nn.Dense(2 * self.config.n_continuous, kernel_init=_he())(h)
        mu, raw = jnp.split(out, 2, axis=-1)
        return mu, nn.softplus(raw)


class Decoder(nn.Module):
    """[z, d] (n, m + S) -> Bernoulli logits (n, H, W, 1)."""

    config: VAEConfig

    @nn.compact
    def __call__(self, zd):
        c = self.config
        side, f = c.image_size // 16, c.conv_features
        h = nn.relu(nn.Dense(c.hidden, kernel_init=_he())(zd))
        h = nn.relu(nn.Dense(side * side * f[3], kernel_init=_he())(h))
        h = h.reshape(h.shape[0], side, side, f[3])
        for feat in (f[3], f[1], f[0]):
            h = nn.relu(nn.ConvTranspose(feat, (4, 4), strides=(2, 2), padding="SAME", kernel_init=_he())(h))
        return nn.ConvTranspose(1, (4, 4), strides=(2, 2), padding="SAME", kernel_init=_he())(h)


class VAE(nn.Module):
    """Encoder + decoder; ``apply(params, x, method="encode")`` or ``method="decode"`` with ``[z, d]``."""

    config: VAEConfig

    def setup(self):
        self.encoder = Encoder(self.config)
        self.decoder = Decoder(self.config)

    def encode(self, x):
        return self.encoder(x)

    def decode(self, zd):
        return self.decoder(zd)

    def __call__(self, x, d):
        mu, _ = self.encode(x)
        return self.decode(jnp.concatenate([mu, d], axis=-1))


def init_params(config: VAEConfig, seed: int = 0):
    """Fresh parameters (a plain pytree) of :class:`VAE` for ``config``: He initialisation, biases zero.

    Every kernel (dense, conv, transposed conv) is drawn from a normal truncated at two standard deviations, with
    variance 2 / fan_in after truncation (fan_in = the product of all but the output axis), as flax's
    ``variance_scaling(2.0, "fan_in", "truncated_normal")`` and the original's TF initializer. The draws are made
    in NumPy (``np.random.default_rng(seed)``, kernels in the pytree's sorted order) on shapes from
    ``jax.eval_shape``: nothing is compiled, which on a loaded CPU saves the minute that an eager or jitted
    ``model.init`` spends compiling one small random program per layer shape.
    """
    model = VAE(config)
    x = jax.ShapeDtypeStruct((1, config.image_size, config.image_size, 1), jnp.float32)
    d = jax.ShapeDtypeStruct((1, config.n_categories), jnp.float32)
    shapes = jax.eval_shape(model.init, jax.ShapeDtypeStruct((2,), jnp.uint32), x, d)
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        if getattr(path[-1], "key", None) != "kernel":
            return jnp.zeros(leaf.shape, leaf.dtype)
        fan_in = int(np.prod(leaf.shape[:-1]))
        w = rng.standard_normal(leaf.shape)
        bad = np.abs(w) > 2.0
        while bad.any():  # resample outside [-2, 2]
            w[bad] = rng.standard_normal(int(bad.sum()))
            bad = np.abs(w) > 2.0
        std = np.sqrt(2.0 / fan_in) / 0.87962566103423978  # std of N(0, 1) truncated at +-2
        return jnp.asarray(w * std, dtype=leaf.dtype)

    return jax.tree_util.tree_map_with_path(fill, shapes)


def kl_per_dim(mu, sigma):
    """(n, m) KL(N(mu, sigma^2) || N(0, 1)) per dimension, as the original: 0.5 (mu^2 + sigma^2 - 2 log(sigma + 1e-8) - 1)."""
    return 0.5 * (mu**2 + sigma**2 - 2.0 * jnp.log(sigma + 1e-8) - 1.0)


def bce_sum(logits, x):
    """(n,) sigmoid cross-entropy summed over all pixels of each image."""
    return optax.sigmoid_binary_cross_entropy(logits, x).reshape(x.shape[0], -1).sum(axis=1)


def weight_l2(params):
    """Sum of squared conv and dense kernels (biases excluded)."""
    leaves = jax.tree_util.tree_leaves_with_path(params)
    return sum(jnp.sum(w**2) for path, w in leaves if getattr(path[-1], "key", None) == "kernel")


def loss_fn(params, model: VAE, x, eps, d, betas, weight_decay: float = 4e-5):
    """The CascadeVAE / beta-VAE objective of spec §1 for one minibatch.

    .. math::

        L = \\frac1n \\sum_i \\mathrm{BCE}(x_i, \\mathrm{dec}([z_i, d_i]))
            + \\sum_j \\beta_j \\frac1n \\sum_i \\mathrm{KL}_{ij} + \\mathrm{wd} \\lVert W \\rVert^2,
        \\qquad z_i = \\mu_i + \\sigma_i \\odot \\varepsilon_i

    ``d`` is (n, S) (one-hot, or zeros during the warm-up); ``betas`` is (m,). Gradient flows only through the
    reconstruction of the chosen category. Returns ``(loss, (recon, kl (m,)))``.
    """
    mu, sigma = model.apply(params, x, method="encode")
    z = mu + sigma * eps
    logits = model.apply(params, jnp.concatenate([z, d], axis=-1), method="decode")
    recon = bce_sum(logits, x).mean()
    kl = kl_per_dim(mu, sigma).mean(axis=0)
    loss = recon + jnp.sum(betas * kl) + weight_decay * weight_l2(params)
    return loss, (recon, kl)


def unary_costs(params, model: VAE, x, eps):
    """(n, S) u_ik = BCE_sum(x_i, dec([z_i, e_k])) with one shared z_i = mu_i + sigma_i * eps_i (spec §2 step 1).

    All S decoder passes run as one batch of n * S. ``eps = 0`` gives the test-time costs (z = mu).
    """
    n_cat = model.config.n_categories
    mu, sigma = model.apply(params, x, method="encode")
    z = mu + sigma * eps
    n = z.shape[0]
    onehot = jnp.repeat(jnp.eye(n_cat, dtype=z.dtype), n, axis=0)  # category-major: rows k*n + i
    zd = jnp.concatenate([jnp.tile(z, (n_cat, 1)), onehot], axis=-1)
    logits = model.apply(params, zd, method="decode")
    xs = jnp.tile(x, (n_cat, 1, 1, 1))
    return bce_sum(logits, xs).reshape(n_cat, n).T


def make_optimizer(learning_rate: float = 1e-4) -> optax.GradientTransformation:
    """Adam(0.9, 0.999) at a constant learning rate (the original's effective schedule)."""
    return optax.adam(learning_rate, b1=0.9, b2=0.999)


def make_train_step(model: VAE, optimizer: optax.GradientTransformation, weight_decay: float = 4e-5):
    """A jitted ``step(params, opt_state, x, eps, d, betas) -> (params, opt_state, loss, recon, kl)``."""

    @jax.jit
    def step(params, opt_state, x, eps, d, betas):
        (loss, (recon, kl)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            params, model, x, eps, d, betas, weight_decay
        )
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, recon, kl

    return step


def make_unary_fn(model: VAE):
    """A jitted ``unary(params, x, eps) -> (n, S)`` costs (no gradient)."""
    return jax.jit(lambda params, x, eps: unary_costs(params, model, x, eps))


def make_encode_fn(model: VAE):
    """A jitted ``encode(params, x) -> (mu, sigma)``."""
    return jax.jit(lambda params, x: model.apply(params, x, method="encode"))


def make_decode_fn(model: VAE):
    """A jitted ``decode(params, zd) -> probabilities (n, H, W)`` for ``zd = [z, d]``."""
    return jax.jit(lambda params, zd: jax.nn.sigmoid(model.apply(params, zd, method="decode"))[..., 0])
