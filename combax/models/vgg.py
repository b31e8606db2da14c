"""VGG with batch norm as a chain CNN (Simonyan & Zisserman, ICLR 2015, arXiv 1409.1556), for depth compression.

Every conv is 3x3 + BN + ReLU; the max-pools are break positions (a merged block never spans a pool). VGG19 gives
L = 16, breaks {2, 4, 8, 12, 16} and 36 valid blocks, as in the spec (§1.2, §5.3). The classifier head is global
average pooling and one dense layer (the CIFAR-style VGG head).
"""

from __future__ import annotations

from .chain import ChainNet, ChainSpec, ConvSpec

__all__ = ["CONFIGS", "vgg_spec", "vgg"]

CONFIGS = {
    11: (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    13: (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    19: (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"),
}


def vgg_spec(
    depth: int = 19, width: float = 1.0, *, n_classes: int = 1000, in_channels: int = 3, cfg=None
) -> ChainSpec:
    """The chain description of VGG-``depth`` (11, 13, 16, 19) with BN and channel multiplier ``width``; or a custom
    ``cfg`` sequence of widths and ``"M"`` (max-pool)."""
    if cfg is None:
        if depth not in CONFIGS:
            raise ValueError(f"`depth` must be one of {sorted(CONFIGS)}; got {depth}")
        cfg = CONFIGS[depth]
    if width <= 0:
        raise ValueError(f"`width` must be > 0; got {width}")
    convs, pools = [], []
    c_in = in_channels
    for item in cfg:
        if item == "M":
            if not convs:
                raise ValueError("`cfg` must not start with a pool")
            pools.append(len(convs))
            continue
        c_out = max(1, int(round(item * width)))
        convs.append(ConvSpec(c_in, c_out, 3, 1, 1))
        c_in = c_out
    L = len(convs)
    return ChainSpec(
        convs=tuple(convs),
        default_acts=tuple(range(1, L + 1)),
        breaks=tuple(pools),
        pools=tuple(pools),
        activation="relu",
        n_classes=n_classes,
        in_channels=in_channels,
        name=f"vgg{L}-{width:g}",
    )


def vgg(depth: int = 19, width: float = 1.0, *, acts=None, cuts=None, **kwargs) -> ChainNet:
    """A VGG :class:`~combax.models.chain.ChainNet` with activations ``acts`` and cuts ``cuts`` (None: original)."""
    return ChainNet(vgg_spec(depth, width, **kwargs), acts=acts, cuts=cuts)
