r"""The fitted quadratic inference-time model of a CIFAR ResNet (Jeong et al. 2022, spec §2), for latency budgets.

Every prunable conv (conv + BN + ReLU) of a :class:`~combax.models.resnet.ResNet` is timed on its own over a grid of
(n_in, n_out) channel counts in tile units, and the spec's "M6" model is fitted to it by least squares:

.. math::

    T_l(n_{in}, n_{out}) = a_0 + a_{in}\, n_{in} + a_{out}\, n_{out} + a_{io}\, n_{in} n_{out} \quad [\mathrm{ms}].

The network time is :math:`\sum_l T_l + T_{\rm fixed}`, where :math:`T_{\rm fixed}` (the pooling, the classifier, the
residual adds and the per-call overhead, minus the overheads the standalone timings count once per layer) is
calibrated on whole networks. It has the same bilinear structure as FLOPs, so it plugs straight into
:class:`~combax.solvers.channels.ChannelProblem`: ``cost = a_io`` and ``linear_cost = (a_in, a_out, a_0)`` per conv
(:meth:`LatencyModel.coefficients`), which is what ``channel_problem(..., resource="latency")`` uses.

* :func:`fit_quadratic`: the least-squares fit of one layer (non-negative slopes, as the solver requires).
* :func:`fit_latency_model`: time every distinct conv shape of a ResNet with :func:`combax.adapters.latency.measure`
  (onnxruntime on CPU by default) and fit them; convs of the same shape share one fit.
* :func:`validate_latency_model`: predicted vs measured end-to-end latency of random pruned networks (MAPE).

Reference: Y. Jeong, D. Lee, G. An, C. Son, H. O. Song, "Optimal channel selection with discrete QCQP",
AISTATS 2022, arXiv 2202.12417 (§2 of ``specs/channel_qcqp.md``: per-layer grids in tile units, OLS per layer,
architecture-level error on random pruned networks).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from combax.models.resnet import ConvInfo, ResNet, conv_layout

__all__ = [
    "LayerFit",
    "LatencyModel",
    "LatencyValidation",
    "fit_quadratic",
    "time_conv",
    "network_latency",
    "fit_latency_model",
    "random_selection",
    "validate_latency_model",
]


@dataclass(frozen=True, slots=True)
class LayerFit:
    """The least-squares fit of one layer's time.

    Attributes
    ----------
    coef : (4,) float, (a_0, a_in, a_out, a_io) in ms, per channel (a_in, a_out) and per channel pair (a_io).
    mpe : mean absolute percentage error of the fit on its own grid (%).
    r2 : coefficient of determination on the grid.
    n_points : grid points fitted.
    """

    coef: np.ndarray
    mpe: float
    r2: float
    n_points: int

    def predict(self, n_in, n_out) -> np.ndarray:
        """T(n_in, n_out) in ms (broadcasting)."""
        a0, a1, a2, a3 = self.coef
        n_in, n_out = np.asarray(n_in, np.float64), np.asarray(n_out, np.float64)
        return a0 + a1 * n_in + a2 * n_out + a3 * n_in * n_out


@dataclass(frozen=True, slots=True)
class LatencyModel:
    """A fitted per-conv quadratic latency model of one ResNet architecture on one device, batch and thread count.

    Attributes
    ----------
    names : tuple of the M conv parameter names (``stem_conv``, ``block0_conv1``, ...), in map order.
    coef : (M, 4) float, per conv (a_0, a_in, a_out, a_io) in ms (see :class:`LayerFit`).
    fixed : float, the time outside the convs (ms); may be negative (it removes per-layer overheads counted twice).
    layer_mpe, layer_r2 : (M,) float, the fit quality of each conv's grid.
    batch_size, threads : the timing setting the model holds for.
    backend : the :func:`~combax.adapters.latency.measure` backend.
    statistic : which :class:`~combax.adapters.latency.Timing` field the timings are (``"median_ms"``, ``"p10_ms"``).
    seconds : wall time of the fit (timing included).
    """

    names: tuple
    coef: np.ndarray
    fixed: float
    layer_mpe: np.ndarray
    layer_r2: np.ndarray
    batch_size: int
    threads: int | None
    backend: str
    statistic: str
    seconds: float

    def coefficients(self, layout) -> tuple[np.ndarray, np.ndarray]:
        """``(cost, linear_cost)`` for :class:`~combax.solvers.channels.ChannelProblem`: a_io and (a_in, a_out, a_0).

        ``layout`` is the :func:`~combax.models.resnet.conv_layout` of the network being pruned; its conv names must
        be the model's.
        """
        names = tuple(c.name for c in layout)
        if names != self.names:
            raise ValueError(f"`layout` convs {names} do not match the latency model's {self.names}")
        coef = np.asarray(self.coef, dtype=np.float64)
        return coef[:, 3].copy(), np.ascontiguousarray(coef[:, [1, 2, 0]])

    def predict_counts(self, n_in, n_out) -> float:
        """Predicted network time (ms) for per-conv input and output channel counts (M,) each, ``fixed`` included."""
        n_in, n_out = np.asarray(n_in, np.float64), np.asarray(n_out, np.float64)
        c = np.asarray(self.coef)
        return float(np.sum(c[:, 0] + c[:, 1] * n_in + c[:, 2] * n_out + c[:, 3] * n_in * n_out) + self.fixed)

    def predict(self, model: ResNet, input_shape=(32, 32, 1)) -> float:
        """Predicted network time (ms) of a (pruned) ResNet from its widths, ``fixed`` included."""
        lay = conv_layout(model, tuple(input_shape))
        return self.predict_counts([c.c_in for c in lay], [c.c_out for c in lay])


@dataclass(frozen=True, slots=True)
class LatencyValidation:
    """Predicted vs measured end-to-end latency of pruned networks.

    Attributes
    ----------
    predicted_ms, measured_ms : (n,) float.
    mape : mean absolute percentage error (%), ``100 mean(|pred - meas| / meas)``.
    max_ape : largest absolute percentage error (%).
    """

    predicted_ms: np.ndarray
    measured_ms: np.ndarray
    mape: float
    max_ape: float


# ---------------------------------------------------------------------------------------------------------- fitting
def _fit_iv(n_in, n_out, t):
    n_in = np.asarray(n_in, dtype=np.float64).ravel()
    n_out = np.asarray(n_out, dtype=np.float64).ravel()
    t = np.asarray(t, dtype=np.float64).ravel()
    if not (n_in.shape == n_out.shape == t.shape):
        raise ValueError(f"`n_in`, `n_out` and `t` must have one entry per point; got {n_in.shape}, {n_out.shape}, "
                         f"{t.shape}")  # fmt: skip
    if n_in.size < 1:
        raise ValueError("`t` needs at least 1 timed point to fit; got none")
    for name, a in (("n_in", n_in), ("n_out", n_out), ("t", t)):
        if not np.all(np.isfinite(a)):
            raise ValueError(f"`{name}` must be finite")
    if np.any(n_in < 1) or np.any(n_out < 1):
        raise ValueError("`n_in` and `n_out` must be >= 1 channel")
    return n_in, n_out, t


def fit_quadratic(n_in, n_out, t, *, model: str = "M6") -> LayerFit:
    r"""Least-squares fit of :math:`T = a_0 + a_{in} n_{in} + a_{out} n_{out} + a_{io} n_{in} n_{out}` to timings.

    Parameters
    ----------
    n_in, n_out : (P,) channel counts of the timed points.
    t : (P,) times (ms).
    model : ``"M6"`` (all four terms) or ``"M5"`` (no pure :math:`n_{out}` term), spec §2.

    Returns
    -------
    LayerFit. The slopes :math:`a_{in}, a_{out}, a_{io}` are constrained to be >= 0 (the channel solver needs
    non-negative resource coefficients); where the unconstrained OLS slopes are non-negative this is OLS. If every
    point has the same :math:`n_{in}` (the stem: its input channels are fixed), the fit is linear in :math:`n_{out}`
    and the slope is stored as :math:`a_{io} = b / n_{in}` (and symmetrically for a fixed :math:`n_{out}`), which is
    the same function on every point the layer can take.

    Raises
    ------
    ValueError : mismatched or non-finite inputs, counts < 1, no points, unknown ``model``.

    Notes
    -----
    Bounded linear least squares (``scipy.optimize.lsq_linear``, BVLS) on the P x 4 design; columns are scaled to unit
    norm first. O(P) time.
    """
    from scipy.optimize import lsq_linear

    if model not in ("M6", "M5"):
        raise ValueError(f"`model` must be 'M6' or 'M5'; got {model!r}")
    n_in, n_out, t = _fit_iv(n_in, n_out, t)
    fixed_in, fixed_out = np.ptp(n_in) == 0, np.ptp(n_out) == 0
    one = np.ones_like(t)
    if fixed_in and fixed_out:
        cols, slots = [one], [0]
    elif fixed_in:
        cols, slots = [one, n_out], [0, 3]
    elif fixed_out:
        cols, slots = [one, n_in], [0, 3]
    else:
        cols, slots = [one, n_in, n_out, n_in * n_out], [0, 1, 2, 3]
        if model == "M5":
            cols, slots = [one, n_in, n_in * n_out], [0, 1, 3]
    a = np.stack(cols, axis=1)
    scale = np.linalg.norm(a, axis=0)
    lower = np.r_[-np.inf, np.zeros(a.shape[1] - 1)]
    sol = lsq_linear(a / scale, t, bounds=(lower, np.full(a.shape[1], np.inf)), method="bvls")
    x = sol.x / scale
    x[1:] = np.maximum(x[1:], 0.0)  # BVLS may end a round-off outside its bound (-1e-23); the solver needs >= 0
    coef = np.zeros(4)
    for s, val in zip(slots, x):
        coef[s] = val
    if fixed_in and not fixed_out:
        coef[3] /= n_in[0]
    elif fixed_out and not fixed_in:
        coef[3] /= n_out[0]
    fit = LayerFit(coef, 0.0, 0.0, int(t.size))
    pred = fit.predict(n_in, n_out)
    mpe = float(100.0 * np.mean(np.abs(pred - t) / np.maximum(np.abs(t), 1e-12)))
    ss_tot = float(np.sum((t - t.mean()) ** 2))
    r2 = 1.0 - float(np.sum((pred - t) ** 2)) / ss_tot if ss_tot > 0 else 1.0
    return LayerFit(coef, mpe, r2, int(t.size))


# ---------------------------------------------------------------------------------------------------------- timing
def _conv_bn_relu_fn(c_in, c_out, k, stride, seed=0):
    """``(apply_fn, variables)`` of one conv + BN + ReLU as in the ResNet (BN in inference mode)."""
    import flax.linen as nn
    import jax.numpy as jnp

    from combax.models.resnet import _conv

    class ConvBNReLU(nn.Module):
        @nn.compact
        def __call__(self, x):
            y = _conv(c_out, stride, "conv", kernel=k)(x)
            return nn.relu(nn.BatchNorm(use_running_average=True, name="bn")(y))

    mod = ConvBNReLU()
    rng = np.random.default_rng(seed)
    variables = {
        "params": {
            "conv": {"kernel": jnp.asarray(rng.standard_normal((k, k, c_in, c_out)) * 0.1, jnp.float32)},
            "bn": {"scale": jnp.ones(c_out, jnp.float32), "bias": jnp.asarray(rng.normal(0, 0.1, c_out), jnp.float32)},
        },
        "batch_stats": {"bn": {"mean": jnp.zeros(c_out, jnp.float32), "var": jnp.ones(c_out, jnp.float32)}},
    }
    return (lambda v, x: mod.apply(v, x)), variables


def _best_of(call, repeats: int):
    """The :class:`~combax.adapters.latency.Timing` with the smallest median over ``repeats`` calls of ``call()``.

    On a shared machine, load from other processes only ever adds time; the least-disturbed of a few rounds is the
    steadiest estimate of the network's own time.
    """
    best = None
    for _ in range(max(1, int(repeats))):
        t = call()
        if best is None or t.median_ms < best.median_ms:
            best = t
    return best


def _time_fn(apply_fn, variables, x, *, backend, warmup, runs, threads, workdir, repeats=1):
    from combax.adapters.latency import measure

    if backend == "xla":
        return _best_of(lambda: measure((apply_fn, variables), x, backend="xla", warmup=warmup, runs=runs), repeats)
    from combax.adapters.export import export_onnx

    path = export_onnx(apply_fn, variables, x, Path(workdir) / "net.onnx")
    return _best_of(lambda: measure(path, x, backend=backend, warmup=warmup, runs=runs, threads=threads), repeats)


def time_conv(c_in, c_out, *, k=3, stride=1, hw=(32, 32), batch_size=8, backend="onnxruntime", warmup=5, runs=20,
              threads=1, workdir=None, statistic="median_ms", repeats=3) -> float:  # fmt: skip
    """Time (ms; ``statistic`` of the :class:`~combax.adapters.latency.Timing`, default the median) of one
    standalone conv + BN + ReLU on a (batch_size, H, W, c_in) input; the least-loaded of ``repeats`` rounds of
    ``warmup + runs`` calls."""
    apply_fn, variables = _conv_bn_relu_fn(int(c_in), int(c_out), int(k), int(stride))
    x = np.random.default_rng(0).random((int(batch_size), int(hw[0]), int(hw[1]), int(c_in)), dtype=np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        timing = _time_fn(apply_fn, variables, x, backend=backend, warmup=warmup, runs=runs, threads=threads,
                          workdir=workdir or tmp, repeats=repeats)  # fmt: skip
    return float(getattr(timing, statistic))


def network_latency(model, variables, input_shape=(32, 32, 1), *, batch_size=8, backend="onnxruntime", warmup=10,
                    runs=30, threads=1, onnx_path=None, repeats=3):  # fmt: skip
    """End-to-end :class:`~combax.adapters.latency.Timing` of a ResNet (eval mode) on a (batch_size, H, W, C) input.

    The network is exported to ONNX (:func:`combax.adapters.export.export_onnx`; to ``onnx_path`` if given, else a
    temporary file) and timed with :func:`combax.adapters.latency.measure`, ``repeats`` rounds of ``warmup + runs``
    calls; the round with the smallest median is returned (load from other processes only adds time).
    """
    from combax.adapters.export import export_onnx
    from combax.adapters.latency import measure

    x = np.random.default_rng(0).random((int(batch_size), *tuple(input_shape)), dtype=np.float32)

    def apply_fn(v, xb):
        return model.apply(v, xb, train=False)

    if backend == "xla":
        return _best_of(lambda: measure((apply_fn, variables), x, backend="xla", warmup=warmup, runs=runs), repeats)
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(apply_fn, variables, x, onnx_path or Path(tmp) / "net.onnx")
        return _best_of(lambda: measure(path, x, backend=backend, warmup=warmup, runs=runs, threads=threads), repeats)


def _tile(width: int, points: int, tile: int = 1) -> int:
    """The grid step of a ``width``-channel axis: ``ceil(width / points)`` rounded up to a multiple of ``tile``."""
    step = max(1, -(-int(width) // int(points)))
    return min(int(width), -(-step // int(tile)) * int(tile))


def _grid(width: int, points: int, tile: int = 1) -> np.ndarray:
    """Channel counts step, 2 step, ..., width with step = :func:`_tile` (at most ``points`` of them)."""
    step = _tile(width, points, tile)
    g = np.arange(step, width + 1, step)
    return np.unique(np.r_[g, width]).astype(np.int64)


def _signature(c: ConvInfo):
    return (c.c_in, c.c_out, c.k, c.stride, c.h_in, c.src == 0)


def fit_latency_model(model: ResNet, input_shape=(32, 32, 1), *, grid_points: int = 4, tile: int = 8,
                      batch_size: int = 8,
                      backend: str = "onnxruntime", warmup: int = 5, runs: int = 20, threads: int | None = 1,
                      calibration: int = 3, seed: int = 0, statistic: str = "median_ms", repeats: int = 3,
                      progress: bool = True) -> LatencyModel:  # fmt: skip
    r"""Time every distinct conv of ``model`` over a (n_in, n_out) grid, fit the quadratic model, calibrate ``fixed``.

    Parameters
    ----------
    model : the full :class:`ResNet` (widths = the largest counts of the grid).
    input_shape : (H, W, C) of one image.
    grid_points : at most this many counts per axis: steps of ``ceil(C / grid_points)`` rounded up to a multiple of
        ``tile`` (the spec's 16/32/64-channel tiles are for ImageNet widths; CIFAR widths 16/32/64 get 2/4/4 counts
        with the defaults). The stem's input is fixed.
    tile : channel unit (8: onnxruntime's CPU convs work in blocks of 8 channels, so counts off the multiples of 8
        are slower than the quadratic predicts; prune with ``group_size=tile``).
    batch_size, backend, warmup, runs, threads : the timing setting (:func:`combax.adapters.latency.measure`).
    repeats : rounds of ``warmup + runs`` calls per timing; the least-loaded round (smallest median) is kept.
    calibration : networks timed end to end to set ``fixed`` (the full one and ``calibration - 1`` random pruned
        ones); ``fixed`` is the median of measured minus summed per-layer predictions.
    seed : of the random calibration networks.
    statistic : the :class:`~combax.adapters.latency.Timing` field used as "the" time: ``"median_ms"`` (default)
        or ``"p10_ms"`` (the 10th percentile: steadier than the median on a shared machine).
    progress : show a progress bar.

    Returns
    -------
    LatencyModel.

    Notes
    -----
    Convs of identical shape (C_in, C_out, K, stride, input size) share one grid and fit, so ResNet-20 needs 6 grids
    of at most ``grid_points**2`` timings. Cost: that many small ONNX exports and timed runs plus ``calibration``
    whole networks; about a minute for ResNet-20 on 2 CPU cores.
    """
    import time

    from tqdm.auto import tqdm

    from combax.models.classifier_train import init_variables

    if not isinstance(model, ResNet):
        raise ValueError(f"`model` must be a combax.models.resnet.ResNet; got {type(model).__name__}")
    if int(grid_points) < 2:
        raise ValueError(f"`grid_points` must be >= 2; got {grid_points}")
    if int(calibration) < 1:
        raise ValueError(f"`calibration` must be >= 1; got {calibration}")
    t0 = time.perf_counter()
    input_shape = tuple(int(s) for s in input_shape)
    layout = conv_layout(model, input_shape)
    groups: dict = {}
    for i, c in enumerate(layout):
        groups.setdefault(_signature(c), []).append(i)
    jobs = []
    for sig, members in groups.items():
        c = layout[members[0]]
        gin = np.array([c.c_in]) if c.src == 0 else _grid(c.c_in, grid_points, tile)
        for a in gin:
            for b in _grid(c.c_out, grid_points, tile):
                jobs.append((sig, int(a), int(b)))
    times: dict = {}
    bar = tqdm(total=len(jobs) + calibration, desc="latency grid", disable=not progress, leave=False)
    with tempfile.TemporaryDirectory() as tmp:
        for sig, a, b in jobs:
            c = layout[groups[sig][0]]
            t = time_conv(a, b, k=c.k, stride=c.stride, hw=(c.h_in, c.h_in),
                          batch_size=batch_size, backend=backend, warmup=warmup, runs=runs, threads=threads,
                          workdir=tmp, statistic=statistic, repeats=repeats)  # fmt: skip
            times.setdefault(sig, []).append((a, b, t))
            bar.update(1)
        coef = np.zeros((len(layout), 4))
        mpe = np.zeros(len(layout))
        r2 = np.zeros(len(layout))
        for sig, members in groups.items():
            pts = np.array(times[sig], dtype=np.float64)
            f = fit_quadratic(pts[:, 0], pts[:, 1], pts[:, 2])
            coef[members] = f.coef
            mpe[members], r2[members] = f.mpe, f.r2
        partial = LatencyModel(tuple(c.name for c in layout), coef, 0.0, mpe, r2, int(batch_size), threads, backend,
                               statistic, 0.0)  # fmt: skip
        from combax.adapters.pruning import prune

        variables = init_variables(model, input_shape, seed)
        rng = np.random.default_rng(seed)
        resid = []
        for i in range(int(calibration)):
            net, var = model, variables
            if i > 0:
                sel = random_selection(model, rng, input_shape, grid_points=grid_points, tile=tile)
                pr = prune(model, variables, sel, input_shape=input_shape)
                net, var = pr.model, pr.variables
            timing = network_latency(net, var, input_shape, batch_size=batch_size, backend=backend, warmup=warmup,
                                     runs=runs, threads=threads, onnx_path=Path(tmp) / "cal.onnx",
                                     repeats=repeats)  # fmt: skip
            meas = float(getattr(timing, statistic))
            resid.append(meas - partial.predict(net, input_shape))
            bar.update(1)
    bar.close()
    return LatencyModel(partial.names, coef, float(np.median(resid)), mpe, r2, int(batch_size), threads, backend,
                        statistic, time.perf_counter() - t0)  # fmt: skip


# ---------------------------------------------------------------------------------------------------------- validation
def random_selection(model: ResNet, rng, input_shape=(32, 32, 1), *, low: float = 0.25, high: float = 1.0,
                     grid_points: int | None = 4, tile: int = 8):  # fmt: skip
    """A random valid selection (:class:`~combax.adapters.pruning.Selection`) of ``model``.

    Each conv keeps a count drawn uniformly from its grid in ``[low C, high C]`` (the counts of
    :func:`fit_latency_model`'s grid when ``grid_points`` is given, else any count), as randomly chosen groups of
    ``tile`` consecutive channels (single channels when ``tile`` does not divide the width); stream channels after a
    residual add are the OR of the branch and the shortcut, as the solver's constraints allow.
    """
    from combax.adapters.pruning import Selection, _or_streams

    lay = conv_layout(model, tuple(input_shape))
    u = []
    for c in lay:
        g = int(tile) if c.c_out % int(tile) == 0 else 1
        counts = np.arange(g, c.c_out + 1, g) if grid_points is None else _grid(c.c_out, grid_points, tile)
        counts = counts[(counts >= low * c.c_out - 1e-9) & (counts <= high * c.c_out + 1e-9)]
        if counts.size == 0:
            counts = np.array([max(g, int(round(low * c.c_out / g)) * g)])
        n = int(rng.choice(counts))
        mask = np.zeros(c.c_out // g, bool)
        mask[rng.choice(mask.size, size=max(1, n // g), replace=False)] = True
        u.append(np.repeat(mask, g))
    v = _or_streams(model, lay, u)
    return Selection(tuple(u), tuple(v))


def validate_latency_model(latency_model: LatencyModel, model: ResNet, variables=None, input_shape=(32, 32, 1), *,
                           n_networks: int = 10, seed: int = 1, warmup: int = 10, runs: int = 30, tile: int = 8,
                           repeats: int = 3, progress: bool = True) -> LatencyValidation:  # fmt: skip
    r"""Predicted (:meth:`LatencyModel.predict`) vs measured end-to-end latency of ``n_networks`` random pruned
    networks (:func:`random_selection`, physically pruned), timed in the model's own setting.

    Returns
    -------
    LatencyValidation with the mean absolute percentage error
    :math:`100\,\frac1n\sum_i |\hat T_i - T_i| / T_i`.
    """
    from tqdm.auto import tqdm

    from combax.adapters.pruning import prune
    from combax.models.classifier_train import init_variables

    input_shape = tuple(int(s) for s in input_shape)
    if variables is None:
        variables = init_variables(model, input_shape, seed)
    rng = np.random.default_rng(seed)
    pred, meas = [], []
    for _ in tqdm(range(int(n_networks)), desc="latency check", disable=not progress, leave=False):
        sel = random_selection(model, rng, input_shape, tile=tile)
        pr = prune(model, variables, sel, input_shape=input_shape)
        pred.append(latency_model.predict(pr.model, input_shape))
        timing = network_latency(pr.model, pr.variables, input_shape, batch_size=latency_model.batch_size,
                                 backend=latency_model.backend, warmup=warmup, runs=runs,
                                 threads=latency_model.threads, repeats=repeats)  # fmt: skip
        meas.append(float(getattr(timing, latency_model.statistic)))
    return latency_validation(pred, meas)


def latency_validation(predicted, measured) -> LatencyValidation:
    """MAPE and max APE (%) of predicted vs measured times."""
    p, m = np.asarray(predicted, np.float64), np.asarray(measured, np.float64)
    ape = 100.0 * np.abs(p - m) / np.maximum(m, 1e-12)
    return LatencyValidation(p, m, float(ape.mean()) if ape.size else float("nan"),
                             float(ape.max()) if ape.size else float("nan"))  # fmt: skip
