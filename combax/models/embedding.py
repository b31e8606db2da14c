"""A small CNN for deep metric learning with a hash head (papers A and B of ``specs/hash_flow.md``).

The network is ``trunk -> (embedding head, hash head)``:

* the **trunk** g(x) is a two-convolution CNN followed by a dense layer and a leaky ReLU (a scaled-down stand-in for
  the NIN trunk of the papers, sized for 28x28 MNIST and 8x8 digits on a CPU);
* the **embedding head** is a linear map to R^m, trained in the metric stage and used for exact re-ranking;
* the **hash head** is a fresh linear map to R^{K d} (K levels of d buckets), trained in the hash stage.

Parameters are plain pytrees (``flax.linen``), so the hash stage can reuse the metric stage's trunk by copying the
``"trunk"`` subtree (:func:`transplant_trunk`).
"""

from dataclasses import dataclass

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["EmbeddingConfig", "EmbeddingNet", "init_params", "transplant_trunk", "param_count"]


@dataclass(frozen=True, slots=True)
class EmbeddingConfig:
    """Sizes of :class:`EmbeddingNet`.

    Attributes
    ----------
    channels : output channels of the two 3x3 stride-2 convolutions.
    features : width of the trunk's dense layer (the "192-d features" of the papers).
    embed_dim : m, the metric embedding dimension.
    hash_dim : d, buckets per hash level.
    levels : K, the number of hash levels (1 = flat codes of paper A, 2 = compound codes of paper B).
    """

    channels: tuple[int, int] = (16, 32)
    features: int = 128
    embed_dim: int = 64
    hash_dim: int = 64
    levels: int = 1

    def __post_init__(self):
        for name in ("features", "embed_dim", "hash_dim", "levels"):
            value = getattr(self, name)
            if int(value) != value or value < 1:
                raise ValueError(f"`{name}` must be a positive integer; got {value!r}")
        if len(self.channels) != 2 or min(self.channels) < 1:
            raise ValueError(f"`channels` must be two positive integers; got {self.channels!r}")


class Trunk(nn.Module):
    """conv3x3/2 -> leaky ReLU -> conv3x3/2 -> leaky ReLU -> flatten -> dense -> leaky ReLU (slope 1/5.5)."""

    channels: tuple[int, int]
    features: int

    @nn.compact
    def __call__(self, x):
        slope = 1.0 / 5.5
        init = nn.initializers.variance_scaling(2.0, "fan_in", "truncated_normal")
        x = nn.leaky_relu(nn.Conv(self.channels[0], (3, 3), strides=(2, 2), kernel_init=init)(x), slope)
        x = nn.leaky_relu(nn.Conv(self.channels[1], (3, 3), strides=(2, 2), kernel_init=init)(x), slope)
        x = x.reshape(x.shape[0], -1)
        return nn.leaky_relu(nn.Dense(self.features, kernel_init=init)(x), slope)


class EmbeddingNet(nn.Module):
    """Trunk + embedding head + hash head.

    ``apply(params, x)`` with ``x`` of shape (B, H, W, C) returns ``(embedding (B, m), hash_activations (B, K d))``.
    Both heads are linear; normalisation (L2 for the triplet loss) is the loss's business, not the network's.
    """

    config: EmbeddingConfig

    def setup(self):
        c = self.config
        self.trunk = Trunk(tuple(c.channels), c.features)
        self.embed_head = nn.Dense(c.embed_dim)
        self.hash_head = nn.Dense(c.hash_dim * c.levels)

    def __call__(self, x):
        h = self.trunk(x)
        return self.embed_head(h), self.hash_head(h)

    def embed(self, x):
        return self.embed_head(self.trunk(x))

    def hash(self, x):
        return self.hash_head(self.trunk(x))


def init_params(config: EmbeddingConfig, image_shape: tuple[int, int, int], seed: int = 0):
    """Fresh parameters of :class:`EmbeddingNet` for images of shape ``image_shape`` = (H, W, C)."""
    if len(image_shape) != 3:
        raise ValueError(f"`image_shape` must be (H, W, C); got {image_shape!r}")
    model = EmbeddingNet(config)
    return model.init(jax.random.PRNGKey(seed), jnp.zeros((1, *image_shape), jnp.float32))


def transplant_trunk(target, source):
    """``target`` with its trunk (and embedding head) replaced by ``source``'s; the hash head stays fresh.

    This is the papers' "replace the last layer": the hash stage starts from the metric stage's network.
    """
    p = dict(target["params"])
    p["trunk"] = source["params"]["trunk"]
    p["embed_head"] = source["params"]["embed_head"]
    return {**target, "params": p}


def param_count(params) -> int:
    """Total number of scalars in a parameter pytree."""
    return int(sum(x.size for x in jax.tree_util.tree_leaves(params)))
