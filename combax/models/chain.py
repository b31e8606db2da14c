"""Chain CNNs for depth compression: a structural description and the Flax module built from it.

A chain CNN is a stem, a *compressible stack* of L convs (each followed by batch norm and an optional activation),
and a head. Positions 0..L name the feature maps of the stack: position p is the output of conv p (after its BN, the
residual add that ends there, and its activation if kept). Following Kim et al., "Efficient Latency-Aware CNN Depth
Compression via Two-Stage Dynamic Programming" (ICML 2023, arXiv 2301.12187), a compressed network is named by two
position sets:

* ``acts`` = A: positions whose activation is kept;
* ``cuts`` = S: positions where consecutive convs are *not* merged. Between consecutive elements of
  {0} ∪ S ∪ {L} the convs form one *merge group* that :func:`combax.adapters.merge.merge` turns into a single conv.

With A ⊆ S ∪ {L} no activation lies inside a group, so each group is linear. The module applies the spec's padding
re-parameterisation (§3.3): the first conv of a group gets the sum of the group's paddings and the others none, and a
residual that lies inside a group has its input centre-cropped. The unmerged network then equals the merged one
exactly, which is what makes fine-tuning before merging sound.

Validity (§1.2): a group (i, j] may not contain a break position strictly inside, and must be laminar with every
residual interval (disjoint from it, containing it, or inside it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["ConvSpec", "ChainSpec", "ChainNet", "activation_fn"]


@dataclass(frozen=True, slots=True)
class ConvSpec:
    """One conv: ``in_ch -> out_ch``, square ``kernel`` (odd), ``stride``, ``groups`` (1 or ``in_ch`` = depthwise).

    The padding is ``kernel // 2`` on every side (the "same" padding of the original network).
    """

    in_ch: int
    out_ch: int
    kernel: int = 3
    stride: int = 1
    groups: int = 1

    @property
    def padding(self) -> int:
        return self.kernel // 2

    @property
    def depthwise(self) -> bool:
        return self.groups > 1 and self.groups == self.in_ch == self.out_ch


@dataclass(frozen=True)
class ChainSpec:
    """Structure of a chain CNN (stem, compressible stack, head).

    Attributes
    ----------
    convs : the L convs of the compressible stack, conv p maps position p-1 to position p.
    default_acts : positions (1..L) that carry an activation in the original network.
    optional : positions whose activation is absent in the original but may be added (MobileNetV2 block ends).
    residuals : (src, tgt) intervals: the feature at ``src`` is added to the output of conv ``tgt`` (before its
        activation). Stride 1 and equal widths, laminar.
    breaks : positions that no merge group may contain strictly inside (stride boundaries, pools).
    pools : positions followed by a 2x2 max-pool (VGG); a subset of ``breaks``.
    activation : ``"relu6"`` or ``"relu"``.
    stem, head : convs (each + BN + activation) before and after the stack; the head ends in global average
        pooling and a dense layer with ``n_classes`` outputs.
    n_classes, in_channels : classifier outputs, image channels.
    name : e.g. ``"mobilenetv2-0.5"``.
    """

    convs: tuple[ConvSpec, ...]
    default_acts: tuple[int, ...]
    optional: tuple[int, ...] = ()
    residuals: tuple[tuple[int, int], ...] = ()
    breaks: tuple[int, ...] = ()
    pools: tuple[int, ...] = ()
    activation: str = "relu6"
    stem: tuple[ConvSpec, ...] = ()
    head: tuple[ConvSpec, ...] = ()
    n_classes: int = 10
    in_channels: int = 1
    name: str = "chain"
    _cache: dict = field(default_factory=dict, compare=False, hash=False, repr=False)

    def __post_init__(self):
        L = len(self.convs)
        if L == 0:
            raise ValueError("`convs` must hold at least one conv; got none")
        for p, (a, b) in enumerate(zip(self.convs, self.convs[1:]), start=1):
            if a.out_ch != b.in_ch:
                raise ValueError(f"`convs`: conv {p} outputs {a.out_ch} channels but conv {p + 1} takes {b.in_ch}")
        for name in ("default_acts", "optional", "breaks", "pools"):
            bad = [p for p in getattr(self, name) if not 1 <= p <= L]
            if bad:
                raise ValueError(f"`{name}` must hold positions in 1..{L}; got {bad}")
        if set(self.default_acts) & set(self.optional):
            raise ValueError("`optional` positions must not carry a default activation")
        if not set(self.pools) <= set(self.breaks):
            raise ValueError(f"`pools` must be a subset of `breaks`; got {self.pools} and {self.breaks}")
        for src, tgt in self.residuals:
            if not 0 <= src < tgt <= L:
                raise ValueError(f"`residuals`: interval ({src}, {tgt}) must satisfy 0 <= src < tgt <= {L}")
            ch_in = self.convs[src].in_ch if src < L else None
            if ch_in != self.convs[tgt - 1].out_ch or any(c.stride != 1 for c in self.convs[src:tgt]):
                raise ValueError(f"`residuals`: ({src}, {tgt}) must span stride-1 convs with equal in/out widths")
        for a, b in [(r, s) for r in self.residuals for s in self.residuals if r < s]:
            if not (a[1] <= b[0] or b[1] <= a[0] or (a[0] <= b[0] and b[1] <= a[1]) or (b[0] <= a[0] and a[1] <= b[1])):
                raise ValueError(f"`residuals` must be laminar; {a} and {b} cross")
        if self.activation not in ("relu6", "relu"):
            raise ValueError(f"`activation` must be 'relu6' or 'relu'; got {self.activation!r}")

    # -- positions --------------------------------------------------------------------------------------------
    @property
    def L(self) -> int:
        """Number of convs in the compressible stack."""
        return len(self.convs)

    @property
    def allowed_acts(self) -> tuple[int, ...]:
        """Positions that may carry an activation: ``default_acts`` ∪ ``optional``."""
        return tuple(sorted(set(self.default_acts) | set(self.optional)))

    def valid_block(self, i: int, j: int) -> bool:
        """Whether convs i+1..j may be merged into one conv (no break strictly inside, laminar residuals, and no
        stride > 1 before a conv with kernel > 1 inside the block)."""
        if not 0 <= i < j <= self.L:
            return False
        if any(i < b < j for b in self.breaks):
            return False
        for src, tgt in self.residuals:
            disjoint = j <= src or tgt <= i
            if not (disjoint or (i <= src and tgt <= j) or (src <= i and j <= tgt)):
                return False
        strided = False
        for c in self.convs[i:j]:
            if strided and c.kernel > 1:
                return False
            strided = strided or c.stride > 1
        return True

    def valid_blocks(self) -> list[tuple[int, int]]:
        """Every valid block (i, j), in order of i then j."""
        v = self._cache.get("valid")
        if v is None:
            v = self._cache["valid"] = np.argwhere(self._valid_matrix()).tolist()
        return [tuple(b) for b in v]

    def _valid_matrix(self) -> np.ndarray:
        m = self._cache.get("matrix")
        if m is None:
            L = self.L
            m = np.zeros((L + 1, L + 1), dtype=bool)
            for i in range(L):
                for j in range(i + 1, L + 1):
                    m[i, j] = self.valid_block(i, j)
            self._cache["matrix"] = m
        return m

    def default_structure(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(A, S) of the original network: default activations, a cut at every position."""
        return tuple(sorted(self.default_acts)), tuple(range(1, self.L))

    def groups(self, cuts) -> list[tuple[int, int]]:
        """Merge groups (i, j] for the cut set ``cuts``."""
        b = [0, *sorted(cuts), self.L]
        return list(zip(b[:-1], b[1:]))

    def check_structure(self, acts, cuts) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Validate (A, S) against this chain and return them as sorted tuples.

        Raises
        ------
        ValueError
            Positions out of range, A ⊄ S ∪ {L}, an activation where the network has no slot, or a merge group
            that is not a valid block (it would contain a break or cross a residual).
        """
        L = self.L
        A = tuple(sorted({int(a) for a in acts}))
        S = tuple(sorted({int(s) for s in cuts}))
        if any(not 1 <= s <= L - 1 for s in S):
            raise ValueError(f"`cuts` must hold positions in 1..{L - 1}; got {[s for s in S if not 1 <= s <= L - 1]}")
        if any(not 1 <= a <= L for a in A):
            raise ValueError(f"`acts` must hold positions in 1..{L}; got {[a for a in A if not 1 <= a <= L]}")
        outside = sorted(set(A) - set(S) - {L})
        if outside:
            raise ValueError(f"`acts` must be a subset of `cuts` ∪ {{{L}}}; positions {outside} are not cuts")
        no_slot = sorted(set(A) - set(self.allowed_acts))
        if no_slot:
            raise ValueError(f"`acts` holds positions {no_slot} where {self.name} has no activation slot")
        bad = [g for g in self.groups(S) if not self.valid_block(*g)]
        if bad:
            raise ValueError(
                f"`cuts` give merge groups {bad} that are not valid blocks of {self.name} (a break inside, or a "
                "crossed residual)"
            )
        return A, S

    def random_structure(self, rng: np.random.Generator, *, p_act: float = 0.5, max_span: int | None = None):
        """A random valid (A, S): cuts by a random walk over valid blocks (each next block drawn uniformly among the
        valid ones starting at the current position, at most ``max_span`` convs long), then each allowed boundary
        keeps its activation with probability ``p_act``."""
        L = self.L
        m = self._valid_matrix()
        S, p = [], 0
        while p < L:
            ends = [j for j in range(p + 1, L + 1) if m[p, j] and (max_span is None or j - p <= max_span)]
            p = int(rng.choice(ends))
            if p < L:
                S.append(p)
        allowed = set(self.allowed_acts)
        A = [a for a in [*S, L] if a in allowed and rng.random() < p_act]
        return tuple(A), tuple(S)

    def feature_shapes(self, hw: int) -> list[tuple[int, int, int]]:
        """(H, W, C) at positions 0..L for a square input image of size ``hw`` (after the stem)."""
        h = hw
        for c in self.stem:
            h = (h + 2 * c.padding - c.kernel) // c.stride + 1
        ch = self.convs[0].in_ch
        shapes = [(h, h, ch)]
        for p, c in enumerate(self.convs, start=1):
            h = (h + 2 * c.padding - c.kernel) // c.stride + 1
            shapes.append((h, h, c.out_ch))
            if p in self.pools:
                h = h // 2
                shapes[-1] = (h, h, c.out_ch)  # the next conv sees the pooled map
        return shapes

    def merged_conv(self, i: int, j: int) -> ConvSpec:
        """Shape of the single conv that block (i, j] merges into (kernel grows by k-1 per conv, strides multiply)."""
        convs = self.convs[i:j]
        k = 1 + sum(c.kernel - 1 for c in convs)
        s = int(np.prod([c.stride for c in convs]))
        dw = all(c.depthwise for c in convs)
        cin, cout = convs[0].in_ch, convs[-1].out_ch
        return ConvSpec(cin, cout, k, s, cin if dw else 1)


def activation_fn(name: str):
    return jax.nn.relu6 if name == "relu6" else jax.nn.relu


def _conv(spec: ConvSpec, pad: int, name: str) -> nn.Conv:
    return nn.Conv(
        spec.out_ch,
        (spec.kernel, spec.kernel),
        strides=spec.stride,
        padding=((pad, pad), (pad, pad)),
        feature_group_count=spec.groups,
        use_bias=False,
        name=name,
    )


def _bn(train: bool, name: str) -> nn.BatchNorm:
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name=name)


def _maxpool(h):
    return nn.max_pool(h, (2, 2), strides=(2, 2))


class ChainNet(nn.Module):
    """A chain CNN with activation set ``acts`` and merge set ``cuts`` (None: the original network).

    Parameter names do not depend on (A, S) (``stem{k}``, ``conv{p}``/``bn{p}`` for p = 1..L, ``head{k}``,
    ``fc``), so one set of trained variables serves every compressed structure.

    Call as ``net.apply(variables, x, train=False)``. With ``act_mask`` (a float array of length L + 1) the
    structure is ignored: every conv keeps its own padding, and the activation at each allowed position p is
    blended as ``h + act_mask[p] * (act(h) - h)``, so many activation patterns share one compiled function (the
    importance-table proxy). With ``act_mask`` equal to the indicator of ``default_acts`` this is the original net.
    """

    spec: ChainSpec
    acts: tuple[int, ...] | None = None
    cuts: tuple[int, ...] | None = None

    def structure(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        A0, S0 = self.spec.default_structure()
        return (A0 if self.acts is None else tuple(self.acts)), (S0 if self.cuts is None else tuple(self.cuts))

    @nn.compact
    def __call__(self, x, train: bool = False, act_mask=None):
        spec = self.spec
        act = activation_fn(spec.activation)
        h = x
        for k, c in enumerate(spec.stem):
            h = act(_bn(train, f"stembn{k}")(_conv(c, c.padding, f"stem{k}")(h)))
        if act_mask is None:
            h = self._stack(h, train, act)
        else:
            h = self._masked_stack(h, train, act, act_mask)
        for k, c in enumerate(spec.head):
            h = act(_bn(train, f"headbn{k}")(_conv(c, c.padding, f"head{k}")(h)))
        h = jnp.mean(h, axis=(1, 2))
        return nn.Dense(spec.n_classes, name="fc")(h)

    def _masked_stack(self, h, train, act, act_mask):
        spec = self.spec
        srcs = {src for src, _ in spec.residuals}
        skip_to = {tgt: src for src, tgt in spec.residuals}
        allowed = set(spec.allowed_acts)
        feats = {0: h} if 0 in srcs else {}
        for p, c in enumerate(spec.convs, start=1):
            h = _bn(train, f"bn{p}")(_conv(c, c.padding, f"conv{p}")(h))
            if p in skip_to:
                h = h + feats[skip_to[p]]
            if p in allowed:
                h = h + act_mask[p] * (act(h) - h)
            if p in spec.pools:
                h = _maxpool(h)
            if p in srcs:
                feats[p] = h
        return h

    def _stack(self, h, train, act):
        spec = self.spec
        A, S = spec.check_structure(*self.structure())
        A = set(A)
        skip_to = {tgt: src for src, tgt in spec.residuals}
        srcs = {src for src, _ in spec.residuals}
        feats = {}  # position -> group-output feature (unpadded), for residuals that cross groups
        for i, j in spec.groups(S):
            if i in srcs:
                feats[i] = h
            group = spec.convs[i:j]
            P = sum(c.padding for c in group)
            h = jnp.pad(h, ((0, 0), (P, P), (P, P), (0, 0)))
            interior = {i: h}  # padded coordinates inside the group
            for p in range(i + 1, j + 1):
                c = spec.convs[p - 1]
                h = _bn(train, f"bn{p}")(_conv(c, 0, f"conv{p}")(h))
                if p in skip_to:
                    src = skip_to[p]
                    if src >= i:  # the residual lies inside the group: crop its input to the shrunken size
                        m = sum(cc.padding for cc in spec.convs[src:p])
                        skip = interior[src]
                        if m:
                            skip = skip[:, m:-m, m:-m, :]
                    else:
                        skip = feats[src]
                    h = h + skip
                interior[p] = h
            if j in A:
                h = act(h)
            if j in spec.pools:
                h = _maxpool(h)
        return h
