r"""Channel pruning of Flax CIFAR ResNets with the discrete QCQP of :mod:`combax.solvers.channels`.

The joint between a trained :class:`combax.models.resnet.ResNet` and the solver:

* :func:`channel_problem` reads the maps, convs and residual layout from the model, the importance from its weights
  (per-kernel L1 normalised per layer, the paper's "2D" mode; or first-order Taylor from gradients) and the resource
  coefficients (FLOPs, parameters or a fitted latency model), and returns a
  :class:`~combax.solvers.channels.ChannelProblem`.
* :func:`prune` turns a selection (``keep_out`` per conv, ``keep`` per map) into a physically smaller ResNet whose
  outputs equal the masked network's, and whose resource recomputed from the new kernel shapes
  (:func:`resource_from_shapes`) equals the solver's ``resource``.
* :func:`greedy_l1` is the fixed-importance baseline: per-layer filter L1 norms (inactive weights included), a
  uniform keep ratio, with either the naive per-layer bookkeeping or the true resource.
* :func:`finetune` trains the pruned network; since it is physically smaller, this *is* masked fine-tuning with the
  masks fixed (pruned weights do not exist, so they stay zero).

Reference: Y. Jeong, D. Lee, G. An, C. Son, H. O. Song, "Optimal channel selection with discrete QCQP", AISTATS 2022,
arXiv 2202.12417. Baseline: H. Li, A. Kadav, I. Durdanovic, H. Samet, H. P. Graf, "Pruning Filters for Efficient
ConvNets" (PFEC), ICLR 2017, arXiv 1608.08710. Taylor importance: P. Molchanov et al., "Importance Estimation for
Neural Network Pruning", CVPR 2019, arXiv 1906.10771.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from combax.models.resnet import Block, ConvInfo, ResNet, conv_layout

__all__ = [
    "Selection",
    "PrunedNetwork",
    "GreedyResult",
    "RESOURCES",
    "IMPORTANCES",
    "NORMALISATIONS",
    "importance",
    "channel_problem",
    "full_selection",
    "masks_of",
    "prune",
    "resource_from_shapes",
    "greedy_l1",
    "finetune",
]

RESOURCES = ("flops", "params", "latency")
IMPORTANCES = ("l1", "l1_4d", "taylor")
NORMALISATIONS = ("frobenius", "sum")


@dataclass(frozen=True, slots=True)
class Selection:
    """Kept channels of a ResNet, in the solver's layout.

    Attributes
    ----------
    keep_out : tuple of M (C_k,) bool arrays, the kept outputs u of conv k = 1..M (index k - 1).
    keep : tuple of M + 1 (C_t,) bool arrays, the kept channels v of map t = 0..M (after any residual add).
    """

    keep_out: tuple
    keep: tuple


@dataclass(frozen=True, slots=True)
class PrunedNetwork:
    """A physically pruned ResNet.

    Attributes
    ----------
    model : the smaller :class:`ResNet` (same module class, smaller widths).
    variables : its ``{"params", "batch_stats"}``.
    selection : the :class:`Selection` it was cut from.
    resource : dict ``{"flops", "params"}`` of the prunable convs recomputed from the new kernel shapes.
    """

    model: ResNet
    variables: dict
    selection: Selection
    resource: dict


@dataclass(frozen=True, slots=True)
class GreedyResult:
    """The greedy L1-filter baseline's selection.

    Attributes
    ----------
    keep_out, keep : as in :class:`Selection`.
    ratio : the uniform per-layer keep ratio that was chosen.
    estimated : the resource by the naive bookkeeping (every map keeps ``round(ratio C)`` channels).
    resource : the true resource of the selection (stream channels kept by the OR of branch and shortcut count).
    objective : the true objective sum_l u^T I v of the selection under the importance it was scored with.
    """

    keep_out: tuple
    keep: tuple
    ratio: float
    estimated: float
    resource: float
    objective: float


# ---------------------------------------------------------------------------------------------------------- layout
def _layout_iv(model, input_shape):
    if not isinstance(model, ResNet):
        raise ValueError(f"`model` must be a combax.models.resnet.ResNet; got {type(model).__name__}")
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"`input_shape` must be (H, W, C) of one image; got {input_shape!r}")
    return conv_layout(model, shape)


def _residuals(model: ResNet) -> list[tuple[int, int, str]]:
    out = []
    for b, blk in enumerate(model.blocks):
        s, t = 2 * b + 1, 2 * b + 3
        if blk.has_projection:
            kind = "projection"
        elif blk.in_width == blk.width:
            kind = "identity"
        else:
            kind = "zero_pad"
        out.append((s, t, kind))
    return out


def _kernels(variables, layout) -> list[np.ndarray]:
    params = variables["params"]
    return [np.asarray(params[c.name]["kernel"], dtype=np.float64) for c in layout]


def _normalise(mat: np.ndarray, normalisation: str = "frobenius") -> np.ndarray:
    norm = np.sqrt(np.sum(mat**2)) if normalisation == "frobenius" else np.sum(mat)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = mat / norm
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)


# ---------------------------------------------------------------------------------------------------------- importance
def importance(model, variables, *, mode: str = "l1", data=None, input_shape=(32, 32, 1), batch_size: int = 128,
               n_batches: int = 8, seed: int = 0, normalisation: str = "frobenius") -> list[np.ndarray]:  # fmt: skip
    r"""Per-conv importance matrices, each normalised per layer (unit Frobenius norm by default; NaN -> 0).

    Parameters
    ----------
    model, variables : a :class:`ResNet` and its ``{"params", "batch_stats"}``.
    mode :
        ``"l1"``: :math:`I_{j,i} = \sum_{a,b} |W_{j,i,a,b}|` (C_out, C_in) (paper's 2D mode);
        ``"l1_4d"``: :math:`I_{j,i,a,b} = |W_{j,i,a,b}|` (C_out, C_in, K, K);
        ``"taylor"``: :math:`I_{j,i} = \frac{1}{T}\sum_t \sum_{a,b} |W_{j,i,a,b}\, \partial L_t / \partial W_{j,i,a,b}|`
        over ``n_batches`` minibatches ``t`` of ``data`` (first-order Taylor, per kernel).
    data : ``(x, y)`` arrays, needed for ``"taylor"``.
    normalisation : how each layer's matrix is scaled.
        ``"frobenius"`` (the paper's, default): :math:`I / \lVert I\rVert_F`, unit importance "energy" per layer;
        ``"sum"``: :math:`I / \sum_{j,i} I_{j,i}`, unit total importance per layer.

    Returns
    -------
    list of M arrays, conv k = 1..M at index k - 1, in (C_out, C_in[, K, K]) order (float64, >= 0).

    Notes
    -----
    O(sum of kernel sizes) for the L1 modes; ``n_batches`` forward/backward passes for Taylor. No gradient flows
    through the result.

    The objective of keeping a whole layer is :math:`\sum I` = :math:`\lVert I\rVert_1 / \lVert I\rVert_F` under
    ``"frobenius"``, which lies between 1 and :math:`\sqrt{C_{out} C_{in}}` and is close to the upper end when the
    kernel norms are nearly uniform (a briefly trained network). Wider layers then weigh more per kept weight: on a
    CIFAR ResNet, whose convs all cost about the same FLOPs, the 64-channel stage is worth about four times the
    16-channel stage, and the exact optimum at a tight FLOPs budget thins the 16-channel stage to a channel or two
    per block. ``"sum"`` gives every layer the same total weight, so the budget is shared by importance *within*
    layers only (not in the original implementation; an option of combax).
    """
    layout = _layout_iv(model, input_shape)
    if mode not in IMPORTANCES:
        raise ValueError(f"`mode` must be one of {IMPORTANCES}; got {mode!r}")
    if normalisation not in NORMALISATIONS:
        raise ValueError(f"`normalisation` must be one of {NORMALISATIONS}; got {normalisation!r}")
    kernels = _kernels(variables, layout)  # (K, K, C_in, C_out) each
    if mode == "l1":
        mats = [np.abs(w).sum(axis=(0, 1)).T for w in kernels]
    elif mode == "l1_4d":
        mats = [np.transpose(np.abs(w), (3, 2, 0, 1)) for w in kernels]
    else:
        if data is None:
            raise ValueError("`data` must be given as (x, y) for mode='taylor'")
        mats = _taylor(model, variables, layout, data, batch_size, n_batches, seed)
    return [_normalise(m, normalisation) for m in mats]


def _taylor(model, variables, layout, data, batch_size, n_batches, seed):
    import jax
    import optax

    x, y = np.asarray(data[0], np.float32), np.asarray(data[1], np.int32)
    if x.ndim != 4 or y.shape != (x.shape[0],):
        raise ValueError(f"`data` must be (x (N, H, W, C), y (N,)); got shapes {x.shape} and {y.shape}")
    names = [c.name for c in layout]

    @jax.jit
    def saliency(params, xb, yb):
        def loss(p):
            logits = model.apply({"params": p, "batch_stats": variables["batch_stats"]}, xb, train=False)
            return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

        g = jax.grad(loss)(params)
        return [jax.numpy.abs(params[n]["kernel"] * g[n]["kernel"]).sum(axis=(0, 1)).T for n in names]

    rng = np.random.default_rng(seed)
    order = rng.permutation(x.shape[0])
    n_batches = max(1, min(n_batches, x.shape[0] // max(1, batch_size)))
    acc = None
    for t in range(n_batches):
        idx = order[t * batch_size : (t + 1) * batch_size]
        s = [np.asarray(a, dtype=np.float64) for a in saliency(variables["params"], x[idx], y[idx])]
        acc = s if acc is None else [a + b for a, b in zip(acc, s)]
    return [a / n_batches for a in acc]


# ---------------------------------------------------------------------------------------------------------- problem
def _unit_costs(layout: list[ConvInfo], resource: str) -> np.ndarray:
    if resource == "flops":
        return np.array([c.k * c.k * c.h_out * c.w_out for c in layout], dtype=np.float64)
    return np.array([c.k * c.k for c in layout], dtype=np.float64)


def _fixed_cost(model: ResNet, variables, layout, resource: str) -> float:
    """Resource outside the optimisation at its current size: classifier and projection shortcuts."""
    params = variables["params"]
    fc = params["fc"]["kernel"].shape
    total = float(fc[0] * fc[1]) + (float(fc[1]) if resource == "params" else 0.0)
    for b, blk in enumerate(model.blocks):
        if blk.has_projection:
            k = params[f"block{b}_proj"]["kernel"].shape
            hw = layout[2 * b + 2].h_out * layout[2 * b + 2].w_out if resource == "flops" else 1
            total += float(k[2] * k[3] * hw)
    return total


def channel_problem(model, variables, resource: str = "flops", ratio: float = 0.5, *, input_shape=(32, 32, 1),
                    mode: str = "l1", data=None, latency_model=None, group_size=None, normalisation: str = "frobenius",
                    min_keep=None, **importance_kwargs):  # fmt: skip
    r"""The channel-selection QCQP of a trained ResNet (Jeong et al. 2022, §1.5).

    .. math::

        \max_{u, v} \sum_l u^{(l)\top} I^{(l)} v^{(l-1)} \quad\text{s.t.}\quad
        \sum_l c_l\, n_l m_{l-1} (+\ \beta_l m_{l-1} + \gamma_l n_l + \delta_l) \le B
        = \rho\,(R_{\rm full} + R_{\rm fixed}) - R_{\rm fixed}

    Parameters
    ----------
    model, variables : a :class:`ResNet` and its variables.
    resource : ``"flops"`` (:math:`c_l = K^2 H_l W_l`, multiply-accumulates), ``"params"`` (:math:`c_l = K^2`) or
        ``"latency"`` (the fitted :class:`~combax.adapters.latency_model.LatencyModel` given as ``latency_model``).
    ratio : :math:`\rho \in (0, 1]`, the fraction of the network's resource that remains.
    input_shape : (H, W, C) of one image.
    mode : importance, see :func:`importance` (``"l1_4d"`` is summed over taps here; the 4D stage takes the 4D array).
    data : (x, y) for ``mode="taylor"``.
    group_size : channel groups (tile units) passed to ``ChannelProblem``.
    normalisation : per-layer scaling of the importance, ``"frobenius"`` (the paper's) or ``"sum"``; see
        :func:`importance`.
    min_keep : None, int or float. The least number of output channels every prunable conv keeps (to avoid layer
        collapse): an int k >= 1 keeps at least k per conv; a float f in (0, 1) keeps at least ceil(f C) of a conv
        with C outputs (at least 1). None: 1 per conv. Passed to ``ChannelProblem`` in its map order (rounded up to
        whole groups with ``group_size``); an int above a conv's width raises ``ValueError``.

    Returns
    -------
    ChannelProblem with maps 0..M (M = number of prunable convs), conv k reading map ``src`` and writing map k,
    residuals ``(2b + 1, 2b + 3, kind)`` per block.

    Notes
    -----
    The classifier and projection shortcuts are outside the optimisation and counted at full size
    (:math:`R_{\rm fixed}`), as in the original; the budget is therefore for the prunable convs only. For
    ``"latency"`` the fixed part is the model's non-conv time (``latency_model.fixed``).
    """
    from combax.solvers.channels import ChannelProblem

    layout = _layout_iv(model, input_shape)
    if resource not in RESOURCES:
        raise ValueError(f"`resource` must be one of {RESOURCES}; got {resource!r}")
    if not 0.0 < float(ratio) <= 1.0:
        raise ValueError(f"`ratio` must lie in (0, 1]; got {ratio}")
    if resource == "latency" and latency_model is None:
        raise ValueError("`latency_model` must be given for resource='latency' (see combax.adapters.latency_model)")
    mats = importance(model, variables, mode=mode, data=data, input_shape=input_shape, normalisation=normalisation,
                      **importance_kwargs)  # fmt: skip
    if mode == "l1_4d":
        mats = [m.sum(axis=(2, 3)) for m in mats]
    widths = [input_shape[2]] + [c.c_out for c in layout]
    convs = [(c.src, c.dst, m) for c, m in zip(layout, mats)]
    if resource == "latency":
        cost, lin = latency_model.coefficients(layout)
        fixed = float(latency_model.fixed)
    else:
        cost, lin = _unit_costs(layout, resource), None
        fixed = _fixed_cost(model, variables, layout, resource)
    prob = ChannelProblem(widths, convs, cost, 0.0, _residuals(model), lin, group_size, _min_keep(min_keep, widths))
    budget = float(ratio) * (prob.full_resource + fixed) - fixed
    return prob.with_budget(budget)


def _min_keep(min_keep, widths):
    """``min_keep`` of :func:`channel_problem` as ChannelProblem's per-map ints (None stays None)."""
    if min_keep is None:
        return None
    if isinstance(min_keep, (bool, np.bool_)) or not isinstance(min_keep, (int, float, np.integer, np.floating)):
        raise ValueError(f"`min_keep` must be an int >= 1 or a float in (0, 1); got {min_keep!r}")
    if isinstance(min_keep, (int, np.integer)):
        if min_keep < 1:
            raise ValueError(f"`min_keep` must be an int >= 1 or a float in (0, 1); got {min_keep}")
        return int(min_keep)
    frac = float(min_keep)
    if not 0.0 < frac < 1.0:
        raise ValueError(f"`min_keep` as a float is a fraction of each layer's width, in (0, 1); got {min_keep}")
    # ceil(frac C), robust to round-off (0.3 * 10 = 3.0000000000000004 keeps 3, not 4)
    return [int(widths[0])] + [max(1, int(np.ceil(round(frac * w, 9)))) for w in widths[1:]]


# ---------------------------------------------------------------------------------------------------------- pruning
def full_selection(model, input_shape=(32, 32, 1)) -> Selection:
    """Every channel kept."""
    layout = _layout_iv(model, input_shape)
    keep_out = tuple(np.ones(c.c_out, bool) for c in layout)
    return Selection(keep_out, (np.ones(input_shape[2], bool), *keep_out))


def _selection_iv(model, solution, input_shape):
    layout = _layout_iv(model, input_shape)
    u = [np.asarray(k, dtype=bool) for k in solution.keep_out]
    v = [np.asarray(k, dtype=bool) for k in solution.keep]
    if len(u) != len(layout) or len(v) != len(layout) + 1:
        raise ValueError(
            f"`solution` needs {len(layout)} keep_out and {len(layout) + 1} keep masks; got {len(u)}, {len(v)}"
        )
    for c in layout:
        if u[c.dst - 1].shape != (c.c_out,) or v[c.dst].shape != (c.c_out,):
            raise ValueError(f"`solution` masks of map {c.dst} must have shape ({c.c_out},)")
    if not v[0].all():
        raise ValueError("`solution.keep[0]` (the input) must keep every channel")
    return layout, u, v


def masks_of(model, solution, input_shape=(32, 32, 1)):
    """``masks`` argument of :class:`ResNet` for the masked network of ``solution`` (float32 0/1 vectors)."""
    _, u, v = _selection_iv(model, solution, input_shape)
    conv = tuple(x.astype(np.float32) for x in u)
    stream = tuple(v[2 * b + 3].astype(np.float32) for b in range(len(model.blocks)))
    return conv, stream


def _slice_bn(tree, keep):
    return {k: np.asarray(a)[keep] for k, a in tree.items()}


def prune(model, variables, solution, *, input_shape=(32, 32, 1)) -> PrunedNetwork:
    """Physically remove the dropped channels: a smaller :class:`ResNet` and its weights.

    Parameters
    ----------
    model, variables : the full :class:`ResNet` and its ``{"params", "batch_stats"}``.
    solution : anything with ``keep_out`` (M masks, conv k at index k - 1) and ``keep`` (M + 1 masks, per map), e.g.
        a ``channels.solve`` result, a :class:`GreedyResult` or a :class:`Selection`. It must satisfy the structural
        constraints (``u <= v`` on residual targets, ``v = u`` elsewhere).

    Returns
    -------
    PrunedNetwork. In eval mode its logits equal the masked network's (``model.apply(..., masks=masks_of(...))``)
    to float32 rounding; its conv kernels have shapes (K, K, m_src, n_k), so :func:`resource_from_shapes` gives
    :math:`\\sum_l c_l n_l m_{l-1}` exactly.

    Notes
    -----
    O(number of weights). Stream channels keep their original order; a residual add whose two inputs are not
    aligned prefixes uses a constant 0/1 1x1 conv to place channels (see :mod:`combax.models.resnet`).
    """
    layout, u, v = _selection_iv(model, solution, input_shape)
    for b in range(len(model.blocks)):
        t = 2 * b + 3
        if np.any(u[t - 1] & ~v[t]):
            raise ValueError(f"`solution`: map {t} keeps a conv output whose stream channel is dropped")
    for c in layout[:1] + layout[1::2]:  # non-target maps: v == u
        if not np.array_equal(u[c.dst - 1], v[c.dst]):
            raise ValueError(f"`solution`: map {c.dst} is no residual target, so keep must equal keep_out")
    params, stats = variables["params"], variables["batch_stats"]
    new_p, new_s = {}, {}

    def cut(conv_name, bn_name, keep_in, keep_out):
        new_p[conv_name] = {"kernel": np.asarray(params[conv_name]["kernel"])[:, :, keep_in][:, :, :, keep_out]}
        new_p[bn_name] = _slice_bn(params[bn_name], keep_out)
        new_s[bn_name] = _slice_bn(stats[bn_name], keep_out)

    cut("stem_conv", "stem_bn", v[0], u[0])
    blocks = []
    for b, blk in enumerate(model.blocks):
        s, m, t = 2 * b + 1, 2 * b + 2, 2 * b + 3
        cut(f"block{b}_conv1", f"block{b}_bn1", v[s], u[m - 1])
        cut(f"block{b}_conv2", f"block{b}_bn2", v[m], u[t - 1])
        stream = np.flatnonzero(v[t])
        out_pos = np.searchsorted(stream, np.flatnonzero(u[t - 1]))
        src = np.flatnonzero(v[s])
        skip_pos = np.full(src.size, -1, dtype=np.int64)
        alive = (src < v[t].size) & v[t][np.minimum(src, v[t].size - 1)]
        skip_pos[alive] = np.searchsorted(stream, src[alive])
        if blk.has_projection:
            cut(f"block{b}_proj", f"block{b}_proj_bn", v[s], v[t])
        blocks.append(
            Block(int(src.size), int(u[m - 1].sum()), int(u[t - 1].sum()), int(stream.size), blk.stride,
                  blk.shortcut, tuple(int(p) for p in out_pos), tuple(int(p) for p in skip_pos), blk.has_projection)
        )  # fmt: skip
    new_p["fc"] = {"kernel": np.asarray(params["fc"]["kernel"])[v[-1]], "bias": np.asarray(params["fc"]["bias"])}
    small = ResNet(stem=int(u[0].sum()), blocks=tuple(blocks), num_classes=model.num_classes)
    new_vars = {"params": new_p, "batch_stats": new_s}
    sel = Selection(tuple(u), tuple(v))
    res = {r: resource_from_shapes(small, new_vars, r, input_shape=input_shape) for r in ("flops", "params")}
    return PrunedNetwork(small, new_vars, sel, res)


def resource_from_shapes(
    model, variables, resource: str = "flops", *, input_shape=(32, 32, 1), latency_model=None
) -> float:
    """Resource of the prunable convs of ``model`` recomputed from the kernel shapes in ``variables``.

    ``"flops"``: sum of K^2 H_out W_out C_in C_out (multiply-accumulates); ``"params"``: sum of K^2 C_in C_out;
    ``"latency"``: the fitted model's prediction for these widths (without its fixed part).
    """
    if resource not in RESOURCES:
        raise ValueError(f"`resource` must be one of {RESOURCES}; got {resource!r}")
    layout = _layout_iv(model, input_shape)
    total = 0.0
    for c in layout:
        kh, kw, cin, cout = np.shape(variables["params"][c.name]["kernel"])
        if resource == "flops":
            total += kh * kw * c.h_out * c.w_out * cin * cout
        elif resource == "params":
            total += kh * kw * cin * cout
    if resource == "latency":
        if latency_model is None:
            raise ValueError("`latency_model` must be given for resource='latency'")
        cost, lin = latency_model.coefficients(layout)
        n = np.array([np.shape(variables["params"][c.name]["kernel"])[3] for c in layout], dtype=np.float64)
        m = np.array([np.shape(variables["params"][c.name]["kernel"])[2] for c in layout], dtype=np.float64)
        total = float(np.sum(cost * n * m + lin[:, 0] * m + lin[:, 1] * n + lin[:, 2]))
    return float(total)


# ---------------------------------------------------------------------------------------------------------- baseline
def _or_streams(model, layout, u):
    """keep per map from kept conv outputs: v_t = u_t OR (zero-padded) v_s on residual targets."""
    v = [None] * (len(layout) + 1)
    v[0] = np.ones(layout[0].c_in, bool)
    v[1] = u[0]
    for b, blk in enumerate(model.blocks):
        s, m, t = 2 * b + 1, 2 * b + 2, 2 * b + 3
        v[m] = u[m - 1]
        vt = u[t - 1].copy()
        if not blk.has_projection:
            vt[: v[s].size] |= v[s][: vt.size]
        v[t] = vt
    return v


def greedy_l1(model, variables, ratio: float = 0.5, resource: str = "flops", *, bookkeeping: str = "naive",
              input_shape=(32, 32, 1), scores=None) -> GreedyResult:  # fmt: skip
    r"""PFEC-style greedy L1-filter pruning at a resource target (the baseline of Jeong et al. 2022).

    Every conv keeps its ``max(1, round(r C_out))`` filters of largest L1 norm :math:`\sum_{i,a,b}|W_{j,i,a,b}|`
    (all inputs, including those pruned upstream: the "inactive weights"); stream channels after a residual add are
    ``v_t = u_t OR v_s``. The uniform ratio ``r`` is the largest on a 1/1000 grid whose resource is at most
    :math:`B = \rho (R_{\rm full} + R_{\rm fixed}) - R_{\rm fixed}`, where the resource is

    * ``bookkeeping="naive"``: :math:`\sum_l c_l n_l n_{l-1}`, as if every map kept ``round(r C)`` channels
      (what a per-layer ratio method believes); the true resource then usually *exceeds* the budget because
      residual streams keep the union of their inputs;
    * ``bookkeeping="exact"``: the true resource of the selection (so the baseline meets the same budget).

    ``scores`` (optional): per-conv (C_out, C_in) importance used to report ``objective`` (default: L1, normalised).
    """
    if bookkeeping not in ("naive", "exact"):
        raise ValueError(f"`bookkeeping` must be 'naive' or 'exact'; got {bookkeeping!r}")
    if resource not in ("flops", "params"):
        raise ValueError(f"`resource` must be 'flops' or 'params' for the greedy baseline; got {resource!r}")
    if not 0.0 < float(ratio) <= 1.0:
        raise ValueError(f"`ratio` must lie in (0, 1]; got {ratio}")
    layout = _layout_iv(model, input_shape)
    kernels = _kernels(variables, layout)
    norms = [np.abs(w).sum(axis=(0, 1, 2)) for w in kernels]
    order = [np.lexsort((np.arange(n.size), -n)) for n in norms]  # largest norm first, ties by index
    cost = _unit_costs(layout, resource)
    fixed = _fixed_cost(model, variables, layout, resource)
    full = float(sum(c * l.c_out * l.c_in for c, l in zip(cost, layout)))
    budget = float(ratio) * (full + fixed) - fixed
    srcs = np.array([c.src for c in layout])

    def select(r):
        n = np.array([max(1, int(round(r * c.c_out))) for c in layout])
        u = []
        for c, o, k in zip(layout, order, n):
            mask = np.zeros(c.c_out, bool)
            mask[o[:k]] = True
            u.append(mask)
        v = _or_streams(model, layout, u)
        n_in_naive = np.where(srcs == 0, layout[0].c_in, n[np.maximum(srcs - 1, 0)])
        est = float(np.sum(cost * n * n_in_naive))
        true = float(sum(c * u[k].sum() * v[l.src].sum() for k, (c, l) in enumerate(zip(cost, layout))))
        return u, v, est, true

    best = None
    for r in np.arange(1000, 0, -1) / 1000.0:
        u, v, est, true = select(r)
        if (est if bookkeeping == "naive" else true) <= budget + 1e-9:
            best = (r, u, v, est, true)
            break
    if best is None:
        r = 1e-3
        u, v, est, true = select(r)
        best = (r, u, v, est, true)
    r, u, v, est, true = best
    mats = scores if scores is not None else importance(model, variables, mode="l1", input_shape=input_shape)
    obj = float(sum(u[k].astype(float) @ mats[k] @ v[l.src].astype(float) for k, l in enumerate(layout)))
    return GreedyResult(tuple(u), tuple(v), float(r), est, true, obj)


# ---------------------------------------------------------------------------------------------------------- fine-tuning
def finetune(pruned: PrunedNetwork, x, y, config=None, *, desc: str = "fine-tune") -> PrunedNetwork:
    """Fine-tune a pruned network (masks fixed: the pruned weights no longer exist), with a progress bar.

    Training the physically smaller network is equivalent to training the masked full network with the masks
    re-applied at every step: the gradients of the surviving weights are the same, and the pruned ones stay zero.
    ``config`` is a :class:`combax.models.classifier_train.TrainConfig` (default: 3 epochs at lr 0.02).
    """
    from combax.models.classifier_train import TrainConfig, fit

    config = config if config is not None else TrainConfig(epochs=3, lr=0.02, warmup_steps=0)
    new = fit(pruned.model, x, y, config, variables=pruned.variables, desc=desc)
    return dataclasses.replace(pruned, variables=new)
