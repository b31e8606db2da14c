"""MobileNetV2 as a chain CNN (Sandler et al., CVPR 2018, arXiv 1801.04381), for depth compression.

The 17 inverted-residual blocks form the compressible stack: L = 50 convs (the first block has no expansion conv),
block ends {2, 5, 8, ..., 50} are linear bottlenecks whose activation slot is optional (the search may add a ReLU6
there, as in DepthShrinker and spec §1.2), breaks sit after the projection conv of each strided block, and every
stride-1 block with equal widths has a residual over its three convs. The stem conv and the final 1x1 conv stay
outside the stack. With the standard settings this reproduces the spec's structural numbers: breaks {5, 11, 20, 41},
ten residual intervals, 171 valid blocks.
"""

from __future__ import annotations

from .chain import ChainNet, ChainSpec, ConvSpec

__all__ = ["mobilenetv2_spec", "mobilenetv2", "SETTINGS"]

# (expansion t, output channels c, repeats n, first stride s), as in the paper's Table 2.
SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def _divisible(v: float, divisor: int = 8) -> int:
    """torchvision's ``_make_divisible``: round to a multiple of 8, never more than 10% down."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def mobilenetv2_spec(
    width: float = 1.0,
    *,
    n_classes: int = 1000,
    in_channels: int = 3,
    stem_stride: int = 2,
    last_channel: int | None = None,
    settings=SETTINGS,
) -> ChainSpec:
    """The chain description of MobileNetV2 with width multiplier ``width``.

    Parameters
    ----------
    width : channel multiplier (> 0); channels are rounded to multiples of 8.
    n_classes, in_channels : classifier outputs and image channels.
    stem_stride : stride of the 3x3 stem conv (2 on ImageNet; 1 keeps small images such as 32x32 MNIST larger).
    last_channel : width of the final 1x1 conv; default ``max(1280, 1280 * width)`` as in the paper.
    settings : (t, c, n, s) rows of the paper's Table 2.
    """
    if width <= 0:
        raise ValueError(f"`width` must be > 0; got {width}")
    c_in = _divisible(32 * width)
    last = last_channel if last_channel is not None else _divisible(1280 * max(1.0, width))
    convs: list[ConvSpec] = []
    default_acts, block_ends, residuals, breaks = [], [], [], []
    for t, c, n, s in settings:
        c_out = _divisible(c * width)
        for r in range(n):
            stride = s if r == 0 else 1
            start = len(convs)
            hidden = c_in * t
            if t != 1:
                convs.append(ConvSpec(c_in, hidden, 1, 1, 1))
                default_acts.append(len(convs))
            convs.append(ConvSpec(hidden, hidden, 3, stride, hidden))
            default_acts.append(len(convs))
            convs.append(ConvSpec(hidden, c_out, 1, 1, 1))
            end = len(convs)
            block_ends.append(end)
            if stride == 1 and c_in == c_out:
                residuals.append((start, end))
            if stride > 1:
                breaks.append(end)
            c_in = c_out
    return ChainSpec(
        convs=tuple(convs),
        default_acts=tuple(default_acts),
        optional=tuple(block_ends),
        residuals=tuple(residuals),
        breaks=tuple(breaks),
        activation="relu6",
        stem=(ConvSpec(in_channels, _divisible(32 * width), 3, stem_stride, 1),),
        head=(ConvSpec(c_in, last, 1, 1, 1),),
        n_classes=n_classes,
        in_channels=in_channels,
        name=f"mobilenetv2-{width:g}",
    )


def mobilenetv2(width: float = 1.0, *, acts=None, cuts=None, **kwargs) -> ChainNet:
    """A MobileNetV2 :class:`~combax.models.chain.ChainNet` with activations ``acts`` and cuts ``cuts``
    (None: the original network). Keywords go to :func:`mobilenetv2_spec`."""
    return ChainNet(mobilenetv2_spec(width, **kwargs), acts=acts, cuts=cuts)
