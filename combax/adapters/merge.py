"""Exact conv merging: a chain CNN with activation set A and cut set S becomes a shallower plain CNN.

Weight surgery of Kim et al., ICML 2023 (arXiv 2301.12187), spec §3.2. Between consecutive cuts the network is
linear (no activation), so its convs compose into one conv:

.. math::

    W[t] = \\sum_{u + v = t} W_1[u]\\, W_2[v], \\qquad b = b_2 + \\sum_{c,v} b_1[c]\\, W_2[v][c, :]

(spatial offsets u, v; channel products as matrices, HWIO layout), with kernel k1 + k2 - 1, stride s2 and padding
p1 + p2 when s1 = 1, or a pure channel product with stride s1·s2 when k2 = 1 (the validity rule guarantees one of
the two). Batch norm is folded first (W ← W·γ/√(σ²+ε), b ← β − μ·γ/√(σ²+ε)); depthwise convs are expanded to
diagonal dense kernels and, if a whole group is depthwise, the diagonal is extracted back; a residual that lies
inside a group is folded as an identity (Dirac) kernel. With the padding re-parameterisation of
:class:`combax.models.chain.ChainNet` the merged network equals the unmerged one up to float rounding.

Cost: merging a group of m convs with merged kernel K costs O(m · K² · k² · C³) (C the widest channel count), done
once in float64 NumPy; the result is cast to float32.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from combax.models.chain import ChainNet, ChainSpec, ConvSpec

__all__ = ["MergedConv", "MergedNet", "merge", "fold_bn", "compose", "base_structure"]

_EPS = 1e-5


@dataclass(frozen=True, slots=True)
class MergedConv:
    """Structure of one conv of a merged network (weights live in :attr:`MergedNet.params`).

    Attributes
    ----------
    kernel, stride, padding, groups, in_ch, out_ch : the conv (square kernel, symmetric zero padding).
    act : ``"relu6"``, ``"relu"`` or None, applied after the conv (and after the residual add).
    skip_from : index into the feature list (0 = network input, k + 1 = output of layer k) added before ``act``,
        or None.
    pool : a 2x2 max-pool follows.
    span : the block (i, j] of the compressible stack this conv replaces; None for stem and head convs.
    """

    kernel: int
    stride: int
    padding: int
    groups: int
    in_ch: int
    out_ch: int
    act: str | None
    skip_from: int | None = None
    pool: bool = False
    span: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True)
class MergedNet:
    """A plain CNN produced by :func:`merge`: convs (with their own padding), global average pool, dense.

    Attributes
    ----------
    layers : tuple of :class:`MergedConv`, in order.
    params : ``{"convs": [{"w": (k, k, in/groups, out), "b": (out,)}, ...], "fc": {"w", "b"}}``, float32.
    acts, cuts : the (A, S) that produced it.
    name : e.g. ``"mobilenetv2-0.5"``.

    ``net.apply(net.params, x)`` (NHWC float32) returns logits; it is a pure JAX function, so it can be jitted,
    exported with :func:`combax.adapters.export.export_onnx` and timed with :func:`combax.adapters.latency.measure`.
    """

    layers: tuple[MergedConv, ...]
    params: dict
    acts: tuple[int, ...]
    cuts: tuple[int, ...]
    name: str

    @property
    def n_convs(self) -> int:
        return len(self.layers)

    def apply(self, params, x):
        import jax
        import jax.numpy as jnp

        feats = [x]
        h = x
        for layer, p in zip(self.layers, params["convs"]):
            h = jax.lax.conv_general_dilated(
                h,
                p["w"],
                (layer.stride, layer.stride),
                ((layer.padding, layer.padding), (layer.padding, layer.padding)),
                dimension_numbers=("NHWC", "HWIO", "NHWC"),
                feature_group_count=layer.groups,
            )
            h = h + p["b"]
            if layer.skip_from is not None:
                h = h + feats[layer.skip_from]
            if layer.act == "relu6":
                h = jnp.clip(h, 0.0, 6.0)
            elif layer.act == "relu":
                h = jnp.maximum(h, 0.0)
            if layer.pool:
                h = jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
            feats.append(h)
        h = jnp.mean(h, axis=(1, 2))
        return h @ params["fc"]["w"] + params["fc"]["b"]


# -- linear-operator algebra (float64 NumPy) ---------------------------------------------------------------------
@dataclass(slots=True)
class _Op:
    w: np.ndarray  # (k, k, cin, cout), dense
    b: np.ndarray  # (cout,)
    stride: int
    padding: int
    depthwise: bool


def fold_bn(kernel, bn: dict, groups: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Fold inference-mode batch norm into a bias-free conv; depthwise kernels are expanded to dense diagonals.

    Parameters
    ----------
    kernel : (k, k, cin / groups, cout) HWIO kernel.
    bn : ``{"scale", "bias", "mean", "var"}`` arrays of shape (cout,).
    groups : 1 (dense) or cin = cout (depthwise).

    Returns
    -------
    (w, b) : dense (k, k, cin, cout) kernel and (cout,) bias, float64.
    """
    w = np.asarray(kernel, dtype=np.float64)
    g = np.asarray(bn["scale"], np.float64) / np.sqrt(np.asarray(bn["var"], np.float64) + _EPS)
    b = np.asarray(bn["bias"], np.float64) - np.asarray(bn["mean"], np.float64) * g
    if groups > 1:
        if w.shape[2] != 1 or w.shape[3] != groups:
            raise ValueError(f"`kernel` of a grouped conv must be depthwise (k, k, 1, {groups}); got {w.shape}")
        dense = np.zeros(w.shape[:2] + (groups, groups))
        idx = np.arange(groups)
        dense[:, :, idx, idx] = w[:, :, 0, :]
        w = dense
    return w * g, b


def compose(op1: _Op, op2: _Op) -> _Op:
    """The single conv equal to ``op2 ∘ op1`` (no activation between them; padding re-parameterised)."""
    k1, k2 = op1.w.shape[0], op2.w.shape[0]
    bias = op2.b + np.einsum("c,uvco->o", op1.b, op2.w)
    if op1.stride == 1:
        ci, co = op1.w.shape[2], op2.w.shape[3]
        w = np.zeros((k1 + k2 - 1, k1 + k2 - 1, ci, co))
        for u in range(k2):
            for v in range(k2):
                w[u : u + k1, v : v + k1] += np.einsum("abic,co->abio", op1.w, op2.w[u, v])
        return _Op(w, bias, op2.stride, op1.padding + op2.padding, op1.depthwise and op2.depthwise)
    if k2 == 1 and op2.padding == 0:
        w = np.einsum("abic,co->abio", op1.w, op2.w[0, 0])
        return _Op(w, bias, op1.stride * op2.stride, op1.padding, op1.depthwise and op2.depthwise)
    raise ValueError(
        f"cannot merge a conv with kernel {k2} after a stride-{op1.stride} conv (would need kernel dilation); "
        "this block is not valid"
    )


def _conv_op(spec: ConvSpec, variables, p: int) -> _Op:
    params, stats = variables["params"], variables["batch_stats"]
    bn = {**params[f"bn{p}"], **stats[f"bn{p}"]}
    w, b = fold_bn(params[f"conv{p}"]["kernel"], bn, spec.groups)
    return _Op(w, b, spec.stride, spec.padding, spec.depthwise)


def _add_identity(op: _Op) -> _Op:
    w = op.w.copy()
    k = w.shape[0] // 2
    idx = np.arange(w.shape[2])
    w[k, k, idx, idx] += 1.0
    return _Op(w, op.b, op.stride, op.padding, op.depthwise)


def _linear(spec: ChainSpec, variables, i: int, j: int, exclude=None) -> _Op:
    """The merged operator of convs i+1..j, folding every residual that lies inside (i, j]."""
    inner = [r for r in spec.residuals if i <= r[0] and r[1] <= j and r != exclude]
    op = None
    p = i
    while p < j:
        starting = [r for r in inner if r[0] == p]
        if starting:
            r = max(starting, key=lambda r: r[1])
            piece = _add_identity(_linear(spec, variables, r[0], r[1], exclude=r))
            p = r[1]
        else:
            piece = _conv_op(spec.convs[p], variables, p + 1)
            p += 1
        op = piece if op is None else compose(op, piece)
    return op


def base_structure(spec: ChainSpec) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(A, S) of the original network (every conv its own group)."""
    return spec.default_structure()


def _plain_layer(spec_conv: ConvSpec, w, b, act, span=None, skip=None, pool=False):
    groups = 1
    if spec_conv.depthwise:
        groups = spec_conv.in_ch
    return MergedConv(
        w.shape[0], spec_conv.stride, spec_conv.padding, groups, w.shape[2], w.shape[3], act, skip, pool, span
    )


def _to_params(w: np.ndarray, b: np.ndarray, depthwise: bool) -> dict:
    if depthwise:
        idx = np.arange(w.shape[2])
        w = w[:, :, idx, idx][:, :, None, :]
    return {"w": np.ascontiguousarray(w, dtype=np.float32), "b": np.asarray(b, dtype=np.float32)}


def merge(model: ChainNet, variables: Any, acts=None, cuts=None) -> MergedNet:
    """Merge a trained chain CNN with activation set ``acts`` (A) and cut set ``cuts`` (S) into a plain CNN.

    Parameters
    ----------
    model : a :class:`~combax.models.chain.ChainNet` (its own ``acts``/``cuts`` are used when these are None).
    variables : ``{"params", "batch_stats"}`` of ``model`` (any (A, S): parameter names do not depend on them).
    acts, cuts : position sets, validated by :meth:`ChainSpec.check_structure`.

    Returns
    -------
    MergedNet
        One conv per merge group, plus the stem and head convs with BN folded; ``merged.apply(merged.params, x)``
        equals ``model.clone(acts=A, cuts=S).apply(variables, x)`` to float32 rounding.

    Raises
    ------
    ValueError
        ``model`` is not a ChainNet, or (A, S) is not a valid structure for it.

    Notes
    -----
    Residuals inside a group become identity kernels; residuals that contain cuts stay explicit adds
    (``skip_from``). No gradient flows through the merge: it is an inference-time transformation.
    """
    if not isinstance(model, ChainNet):
        raise ValueError(f"`model` must be a combax ChainNet (a chain CNN); got {type(model).__name__}")
    spec = model.spec
    A0, S0 = model.structure()
    A, S = spec.check_structure(A0 if acts is None else acts, S0 if cuts is None else cuts)
    params, stats = variables["params"], variables["batch_stats"]
    layers, weights = [], []
    for k, c in enumerate(spec.stem):
        bn = {**params[f"stembn{k}"], **stats[f"stembn{k}"]}
        w, b = fold_bn(params[f"stem{k}"]["kernel"], bn, c.groups)
        layers.append(_plain_layer(c, w, b, spec.activation))
        weights.append(_to_params(w, b, c.depthwise))
    feat_of_pos = {0: len(layers)}  # position -> index into the feature list
    for i, j in spec.groups(S):
        op = _linear(spec, variables, i, j)
        skip = None
        for src, tgt in spec.residuals:
            if tgt == j and src < i:  # crosses cuts: explicit add
                skip = feat_of_pos[src]
        dw = op.depthwise
        mc = spec.merged_conv(i, j)
        layers.append(
            MergedConv(
                op.w.shape[0],
                op.stride,
                op.padding,
                mc.in_ch if dw else 1,
                mc.in_ch,
                mc.out_ch,
                spec.activation if j in A else None,
                skip,
                j in spec.pools,
                (i, j),
            )
        )
        weights.append(_to_params(op.w, op.b, dw))
        feat_of_pos[j] = len(layers)
    for k, c in enumerate(spec.head):
        bn = {**params[f"headbn{k}"], **stats[f"headbn{k}"]}
        w, b = fold_bn(params[f"head{k}"]["kernel"], bn, c.groups)
        layers.append(_plain_layer(c, w, b, spec.activation))
        weights.append(_to_params(w, b, c.depthwise))
    fc = {"w": np.asarray(params["fc"]["kernel"], np.float32), "b": np.asarray(params["fc"]["bias"], np.float32)}
    return MergedNet(tuple(layers), {"convs": weights, "fc": fc}, A, S, spec.name)
