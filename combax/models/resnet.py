"""CIFAR-style ResNets (He et al. 2016, §4.2) in Flax linen, with per-layer widths so a pruned network is a smaller
instance of the same module.

The network is a 3x3 stem conv followed by ``3 n`` basic blocks (ResNet-20/32/56: ``n = 3, 5, 9``) in three stages of
16, 32 and 64 channels at 32x32, 16x16 and 8x8, global average pooling and a dense classifier. Every conv is
followed by batch norm; the first conv of a stage's first block (except stage 1) has stride 2.

Widths are free per conv. A basic block's two convs produce ``mid`` and ``out`` channels, and the residual stream it
writes has ``width`` channels. ``out_pos[j]`` is the stream channel that the second conv's output ``j`` is added into,
and ``skip_pos[i]`` the stream channel that the shortcut's input channel ``i`` goes to (``-1`` = dropped). The full
network uses the identity layout (zero-padding shortcut: input channel ``i`` goes to channel ``i``, the rest are
zero); a channel-pruned network keeps the positions of the survivors, which is how ``combax.adapters.pruning``
builds a physically smaller network that computes exactly what the masked full network computes.

Feature-map numbering (used by the pruning adapter and ``channel_masks``): map 0 is the input image, conv ``k``
(1-based: the stem is conv 1, block ``b``'s convs are ``2b + 2`` and ``2b + 3``) writes map ``k``. Block ``b``'s
residual add reads map ``2b + 1`` and writes map ``2b + 3``.

Reference: K. He, X. Zhang, S. Ren, J. Sun, "Deep Residual Learning for Image Recognition", CVPR 2016,
arXiv 1512.03385 (option A = zero-padding shortcut, option B = projection shortcut).
"""

from __future__ import annotations

from dataclasses import dataclass

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = ["Block", "ResNet", "resnet_cifar", "resnet20", "resnet32", "resnet56", "conv_layout", "ConvInfo"]

SHORTCUTS = ("zero_pad", "projection")


@dataclass(frozen=True, slots=True)
class Block:
    """One basic block's shape.

    Attributes
    ----------
    in_width : channels of the residual stream entering the block.
    mid : output channels of the first 3x3 conv.
    out : output channels of the second 3x3 conv.
    width : channels of the residual stream leaving the block.
    stride : stride of the first conv and of the shortcut (1 or 2).
    shortcut : ``"zero_pad"`` (identity, zero channels where the stream widens) or ``"projection"`` (1x1 conv + BN
        when the shape changes; identity otherwise).
    out_pos : (out,) stream position of every second-conv output channel, or ``None`` for ``0..out-1``.
    skip_pos : (in_width,) stream position of every shortcut channel (``-1``: dropped), or ``None`` for ``0..``;
        ignored by projection shortcuts.
    projected : whether the shortcut is a projection; ``None`` (default): ``shortcut == "projection"`` and the
        stride or the width changes (a pruned network sets it explicitly to keep its parent's layout).
    """

    in_width: int
    mid: int
    out: int
    width: int
    stride: int = 1
    shortcut: str = "zero_pad"
    out_pos: tuple[int, ...] | None = None
    skip_pos: tuple[int, ...] | None = None
    projected: bool | None = None

    @property
    def has_projection(self) -> bool:
        if self.projected is not None:
            return self.projected
        return self.shortcut == "projection" and (self.stride != 1 or self.in_width != self.width)

    def out_positions(self) -> np.ndarray:
        return np.arange(self.out) if self.out_pos is None else np.asarray(self.out_pos, dtype=np.int64)

    def skip_positions(self) -> np.ndarray:
        if self.skip_pos is not None:
            return np.asarray(self.skip_pos, dtype=np.int64)
        pos = np.arange(self.in_width)
        return np.where(pos < self.width, pos, -1)


def _selection(positions: np.ndarray, width: int) -> np.ndarray:
    """(1, 1, n, width) 0/1 kernel of the 1x1 conv that moves channel ``i`` to ``positions[i]`` (``-1``: dropped)."""
    sel = np.zeros((1, 1, positions.size, width), dtype=np.float32)
    ok = positions >= 0
    sel[0, 0, np.flatnonzero(ok), positions[ok]] = 1.0
    return sel


def _place(x, positions: np.ndarray, width: int):
    """Channels of ``x`` moved to ``positions`` of a ``width``-channel map, zeros elsewhere.

    Contiguous layouts (identity, zero padding at the end, a dropped tail) are a pad or a slice; any other layout is
    a constant 0/1 1x1 conv (the ONNX exporter has no gather), which costs ``H W n width`` multiply-adds.
    """
    n = x.shape[-1]
    k = int(np.sum(positions >= 0))
    if np.array_equal(positions[:k], np.arange(k)) and np.all(positions[k:] < 0):
        x = x[..., :k] if k < n else x
        return jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, width - k)]) if k < width else x
    sel = jnp.asarray(_selection(positions, width), dtype=x.dtype)
    return lax.conv_general_dilated(x, sel, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _conv(features: int, stride: int, name: str, kernel: int = 3) -> nn.Conv:
    pad = (kernel - 1) // 2
    return nn.Conv(
        features,
        (kernel, kernel),
        strides=(stride, stride),
        padding=((pad, pad), (pad, pad)),
        use_bias=False,
        kernel_init=nn.initializers.kaiming_normal(),
        name=name,
    )


class ResNet(nn.Module):
    """CIFAR ResNet with free per-layer widths (see the module docstring).

    Attributes
    ----------
    stem : output channels of the stem conv.
    blocks : tuple of :class:`Block`.
    num_classes : classifier outputs.

    ``__call__(x, train=False, masks=None)``: ``x`` is (N, H, W, C) float; returns (N, num_classes) logits. ``masks``,
    if given, is ``(conv_masks, stream_masks)``: one 0/1 vector per conv (its kept output channels, applied after BN
    and ReLU, or after BN for a block's second conv) and one per block (its kept stream channels, applied after the
    residual add and ReLU). That is the *masked network* that physical pruning reproduces.
    """

    stem: int
    blocks: tuple[Block, ...]
    num_classes: int = 10

    @nn.compact
    def __call__(self, x, train: bool = False, masks=None):
        conv_masks, stream_masks = masks if masks is not None else (None, None)

        def bn(name):
            return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name=name)

        def mask(h, m):
            return h if m is None else h * m

        h = nn.relu(bn("stem_bn")(_conv(self.stem, 1, "stem_conv")(x)))
        h = mask(h, None if conv_masks is None else conv_masks[0])
        for b, blk in enumerate(self.blocks):
            y = nn.relu(bn(f"block{b}_bn1")(_conv(blk.mid, blk.stride, f"block{b}_conv1")(h)))
            y = mask(y, None if conv_masks is None else conv_masks[2 * b + 1])
            y = bn(f"block{b}_bn2")(_conv(blk.out, 1, f"block{b}_conv2")(y))
            y = mask(y, None if conv_masks is None else conv_masks[2 * b + 2])
            y = _place(y, blk.out_positions(), blk.width)
            if blk.has_projection:
                s = bn(f"block{b}_proj_bn")(_conv(blk.width, blk.stride, f"block{b}_proj", kernel=1)(h))
            else:
                s = h[:, :: blk.stride, :: blk.stride, :] if blk.stride != 1 else h
                s = _place(s, blk.skip_positions(), blk.width)
            h = nn.relu(y + s)
            h = mask(h, None if stream_masks is None else stream_masks[b])
        h = jnp.mean(h, axis=(1, 2))
        return nn.Dense(self.num_classes, name="fc")(h)


def resnet_cifar(depth: int = 20, *, num_classes: int = 10, base_width: int = 16, shortcut: str = "zero_pad") -> ResNet:
    """The full CIFAR ResNet of ``depth = 6 n + 2`` layers (20, 32, 56, ...), stage widths ``base_width * (1, 2, 4)``.

    ``shortcut="zero_pad"`` is He et al.'s option A (parameter-free), ``"projection"`` option B.
    """
    if not isinstance(depth, int | np.integer) or depth < 8 or (depth - 2) % 6:
        raise ValueError(f"`depth` must be 6 n + 2 for an integer n >= 1 (20, 32, 56, ...); got {depth!r}")
    if shortcut not in SHORTCUTS:
        raise ValueError(f"`shortcut` must be one of {SHORTCUTS}; got {shortcut!r}")
    if base_width < 1 or num_classes < 1:
        raise ValueError(f"`base_width` and `num_classes` must be positive; got {base_width} and {num_classes}")
    n = (depth - 2) // 6
    blocks, prev = [], base_width
    for stage in range(3):
        w = base_width * 2**stage
        for i in range(n):
            stride = 2 if stage > 0 and i == 0 else 1
            blocks.append(Block(prev, w, w, w, stride, shortcut))
            prev = w
    return ResNet(stem=base_width, blocks=tuple(blocks), num_classes=num_classes)


def resnet20(**kwargs) -> ResNet:
    """ResNet-20 (3 blocks per stage, 0.27 M parameters at base width 16)."""
    return resnet_cifar(20, **kwargs)


def resnet32(**kwargs) -> ResNet:
    """ResNet-32 (5 blocks per stage)."""
    return resnet_cifar(32, **kwargs)


def resnet56(**kwargs) -> ResNet:
    """ResNet-56 (9 blocks per stage)."""
    return resnet_cifar(56, **kwargs)


@dataclass(frozen=True, slots=True)
class ConvInfo:
    """One prunable conv of a :class:`ResNet`: its parameter name, maps, kernel size and output spatial size.

    ``src`` and ``dst`` are feature-map indices (see the module docstring); ``h_out * w_out * k * k`` is the
    FLOPs (multiply-accumulates) per kept (output, input) channel pair.
    """

    name: str
    bn: str
    src: int
    dst: int
    c_in: int
    c_out: int
    k: int
    stride: int
    h_in: int
    h_out: int
    w_out: int


def conv_layout(model: ResNet, input_shape: tuple[int, int, int]) -> list[ConvInfo]:
    """The prunable convs of ``model`` (stem and block convs; projections and the classifier excluded), in map order.

    ``input_shape`` is (H, W, C) of one input image.
    """
    h, w, c = input_shape
    out = [ConvInfo("stem_conv", "stem_bn", 0, 1, c, model.stem, 3, 1, h, h, w)]
    for b, blk in enumerate(model.blocks):
        h2, w2 = -(-h // blk.stride), -(-w // blk.stride)
        out.append(ConvInfo(f"block{b}_conv1", f"block{b}_bn1", 2 * b + 1, 2 * b + 2, blk.in_width, blk.mid, 3,
                            blk.stride, h, h2, w2))  # fmt: skip
        out.append(ConvInfo(f"block{b}_conv2", f"block{b}_bn2", 2 * b + 2, 2 * b + 3, blk.mid, blk.out, 3, 1, h2,
                            h2, w2))  # fmt: skip
        h, w = h2, w2
    return out
