"""Latency and importance tables of a chain CNN, the inputs of the depth-compression DP.

Kim et al., "Efficient Latency-Aware CNN Depth Compression via Two-Stage Dynamic Programming" (ICML 2023,
arXiv 2301.12187), spec ``depth_dp.md`` §1.5-1.6. Positions 0..L, block (i, j] = convs i+1..j merged into one.

**Latency table** :func:`latency_table`: for every valid block (i, j] (:meth:`ChainSpec.valid_blocks`: no break
strictly inside, laminar with every residual), the time of ``Sequential(merged_conv, act)`` with random weights,
where ``merged_conv`` has the shape :meth:`ChainSpec.merged_conv` (kernel grows by k-1 per conv, strides multiply,
depthwise iff every constituent is), ``act`` is the network's activation (ReLU6 for MobileNetV2), and the input is
the feature map at position i (:meth:`ChainSpec.feature_shapes`). If j is a pool position (VGG), the 2x2 max-pool
that follows conv j is timed with the block, exactly as :func:`combax.adapters.merge.merge` attaches it to the
merged conv ending at j; so the latency of a compressed stack is the sum of its blocks' entries (plus stem and
head, which no compression changes). Timing is :func:`combax.adapters.latency.measure` (onnxruntime on CPU by
default; ``"xla"`` or ``"tensorrt"`` on request). Entries: 171 blocks on MobileNetV2.

**Importance table** :func:`importance_table`: for every allowed quadruple (i, j, x, y) of the spec's set E
(:func:`combax.solvers.depth.allowed_flags` with ``exclude_zeros=True``: 315 on MobileNetV2, the 36 blocks with
flags (1, 1) on VGG19), the raw change of a validation score

.. math::

    h[i, j, x, y] = \\text{score}(f_{i,j,x,y}) - \\text{score}(f_{\\text{base}})

where :math:`f_{i,j,x,y}` is the trained network with its default activations, every activation strictly inside
(i, j) removed, the activation at i kept iff x = 1 and the one at j iff y = 1. Two methods:

* ``"proxy"`` (default, cheap): no fine-tuning; the trained network is evaluated as is with the modified
  activations, through :class:`~combax.models.chain.ChainNet`'s ``act_mask`` input so every entry shares one
  compiled function. Each conv keeps its own padding (no re-parameterisation), and single-layer entries equal the
  base network wherever their flags are the defaults (h = 0 there).
* ``"finetune"``: the spec's protocol scaled down. Each entry starts from the trained variables, re-initialises conv
  and BN of a single-layer block (j = i + 1), builds the structure (cuts everywhere except strictly inside (i, j),
  so the padding is re-parameterised as if (i, j] were merged, spec §3.3), fine-tunes with
  :func:`combax.models.classifier_train.fit` and scores on the validation split. One fine-tune per entry: the paper
  spends a full ImageNet epoch on each (hundreds of GPU-hours for 315 entries).

**Executors.** Both tables accept any :class:`concurrent.futures.Executor` (a process pool; a Dask cluster through
``Client.get_executor()``, extra ``cluster``). Each task is a module-level function on plain data (NumPy arrays,
tuples), so it pickles. Timing in several processes of *one* machine makes them contend for cores and memory
bandwidth and biases the latencies: parallel latency tables are meant for a cluster of identical machines, one
worker each; importance tables parallelise freely.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import numpy as np

from combax.models.chain import ChainNet, ChainSpec
from combax.models.classifier_train import TrainConfig

__all__ = [
    "LatencyTable",
    "ImportanceTable",
    "normalise_importance",
    "latency_table",
    "importance_table",
    "depth_problem",
]

_BACKENDS = ("onnxruntime", "xla", "tensorrt")
_METHODS = ("proxy", "finetune")
_SCORES = ("accuracy", "loss")


def normalise_importance(h, alpha: float) -> np.ndarray:
    """The spec's ``--norm single`` normalisation (§1.5): ``h - alpha * mean(h over single-layer entries)``.

    The mean runs over every finite entry with j = i + 1 (all flag pairs). NaN entries stay NaN. The paper uses
    alpha = 1.6 (MobileNetV2-1.0), 1.2 (MobileNetV2-1.4), 1.4 (VGG19).

    Raises
    ------
    ValueError
        ``alpha`` is not finite, or ``alpha != 0`` and the table has no finite single-layer entry.
    """
    alpha = float(alpha)
    if not np.isfinite(alpha):
        raise ValueError(f"`alpha` must be finite; got {alpha}")
    h = np.array(h, dtype=np.float64)
    if alpha == 0.0:
        return h
    n = h.shape[0]
    idx = np.arange(n - 1)
    single = h[idx, idx + 1]
    single = single[np.isfinite(single)]
    if single.size == 0:
        raise ValueError("`alpha` != 0 needs single-layer entries (j = i + 1) in the table; it has none")
    return h - alpha * float(single.mean())


# -- results -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LatencyTable:
    """Latency of every timed block of a chain CNN.

    Attributes
    ----------
    latency : (L+1, L+1) float64, ms per batch: the median over the timed runs of block (i, j]. NaN where (i, j] is
        not a valid block or was not timed (and for i >= j).
    spread : (L+1, L+1) float64, ms: the standard deviation over the timed runs (:attr:`Timing.std_ms`, the
        ``stdev`` column of the released tables); NaN likewise.
    backend : ``"onnxruntime"``, ``"xla"`` or ``"tensorrt"``.
    batch : batch size of the timed input.
    hw : input image size (before the stem).
    threads : onnxruntime intra-op threads (None: its default).
    spec_name : :attr:`ChainSpec.name` of the network.
    """

    latency: np.ndarray
    spread: np.ndarray
    backend: str
    batch: int
    hw: int
    threads: int | None
    spec_name: str

    @property
    def L(self) -> int:
        return self.latency.shape[0] - 1

    def save(self, path) -> pathlib.Path:
        """Write to ``path`` (.npz; arrays plus a JSON ``meta`` string). Returns the path written."""
        meta = {k: getattr(self, k) for k in ("backend", "batch", "hw", "threads", "spec_name")}
        return _save(path, meta, latency=self.latency, spread=self.spread)

    @classmethod
    def load(cls, path) -> LatencyTable:
        """Read a table written by :meth:`save`."""
        meta, arrays = _load(path, ("latency", "spread"))
        return cls(**arrays, **meta)


@dataclass(frozen=True)
class ImportanceTable:
    """Raw importance h of every allowed (i, j, x, y) of a chain CNN.

    Attributes
    ----------
    importance : (L+1, L+1, 2, 2) float64, h = score(block variant) - score(base); NaN outside the measured set
        (E, or the given ``blocks``).
    base_score : score of the trained network with its default activations (accuracy fraction, or mean
        cross-entropy for ``score="loss"``).
    method : ``"proxy"`` or ``"finetune"``.
    score : ``"accuracy"`` (h in fractions of the validation set, in [-1, 1]) or ``"loss"`` (h = base loss - loss,
        so higher is better in both).
    spec_name : :attr:`ChainSpec.name` of the network.
    """

    importance: np.ndarray
    base_score: float
    method: str
    score: str
    spec_name: str

    @property
    def L(self) -> int:
        return self.importance.shape[0] - 1

    def normalised(self, alpha: float) -> np.ndarray:
        """:func:`normalise_importance` of this table's raw ``h``."""
        return normalise_importance(self.importance, alpha)

    def save(self, path) -> pathlib.Path:
        """Write to ``path`` (.npz; arrays plus a JSON ``meta`` string). Returns the path written."""
        meta = {k: getattr(self, k) for k in ("base_score", "method", "score", "spec_name")}
        return _save(path, meta, importance=self.importance)

    @classmethod
    def load(cls, path) -> ImportanceTable:
        """Read a table written by :meth:`save`."""
        meta, arrays = _load(path, ("importance",))
        return cls(**arrays, **meta)


def _save(path, meta: dict, **arrays) -> pathlib.Path:
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:  # a file object: np.savez would append ".npz" to a bare name
        np.savez(f, meta=np.array(json.dumps(meta)), **arrays)
    return path


def _load(path, names: tuple[str, ...]) -> tuple[dict, dict]:
    with np.load(pathlib.Path(path), allow_pickle=False) as z:
        missing = [k for k in ("meta", *names) if k not in z.files]
        if missing:
            raise ValueError(f"`path` {str(path)!r} is not a saved table: arrays {missing} are missing")
        meta = json.loads(str(z["meta"]))
        arrays = {k: np.array(z[k], dtype=np.float64) for k in names}
    return meta, arrays


# -- shared helpers ------------------------------------------------------------------------------------------------
def _is_int(v, lo: int) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool) and v >= lo


def _check_hw(spec: ChainSpec, hw) -> int:
    if not _is_int(hw, 1):
        raise ValueError(f"`hw` must be an integer >= 1; got {hw!r}")
    hw = int(hw)
    shapes = spec.feature_shapes(hw)
    small = [p for p, (h, w, _) in enumerate(shapes) if h < 1 or w < 1]
    if small:
        raise ValueError(
            f"`hw` = {hw} is too small for the strides and pools of {spec.name}: the feature map at position "
            f"{small[0]} is empty; use a larger `hw`"
        )
    return hw


def _check_blocks(spec: ChainSpec, blocks) -> list[tuple[int, int]]:
    valid = spec.valid_blocks()
    if blocks is None:
        return valid
    out = []
    for b in blocks:
        try:
            i, j = (int(v) for v in b)
        except (TypeError, ValueError):
            raise ValueError(f"`blocks` must hold (i, j) pairs of ints; got {b!r}") from None
        out.append((i, j))
    bad = [b for b in out if not spec.valid_block(*b)]
    if bad:
        raise ValueError(
            f"`blocks` holds {bad}, which are not valid blocks of {spec.name} (need 0 <= i < j <= {spec.L}, no break "
            "strictly inside, laminar with residuals); take them from `spec.valid_blocks()`"
        )
    return sorted(set(out))


def _run_tasks(fn, tasks: Sequence[tuple], executor: Executor | None, progress: bool, desc: str) -> list:
    """Run ``fn(*task)`` for every task, in-process or on ``executor``; results in task order."""
    from tqdm.auto import tqdm

    bar = tqdm(total=len(tasks), desc=desc, disable=not progress, leave=False)
    results: list = [None] * len(tasks)
    try:
        if executor is None:
            for k, t in enumerate(tasks):
                results[k] = fn(*t)
                bar.update(1)
        else:
            from concurrent.futures import as_completed

            futures = {executor.submit(fn, *t): k for k, t in enumerate(tasks)}
            try:
                for fut in as_completed(futures):
                    results[futures[fut]] = fut.result()
                    bar.update(1)
            except BaseException:
                for fut in futures:
                    fut.cancel()
                raise
    finally:
        bar.close()
    return results


# -- latency -------------------------------------------------------------------------------------------------------
def _time_block_task(
    conv: tuple[int, int, int, int, int, int],
    activation: str,
    pool: bool,
    in_shape: tuple[int, int, int, int],
    backend: str,
    warmup: int,
    runs: int,
    threads: int | None,
    seed: tuple[int, ...],
) -> tuple[float, float]:
    """Time ``conv -> activation (-> 2x2 max-pool)`` on an input of shape ``in_shape`` (NHWC); one table entry.

    ``conv`` = (in_ch, out_ch, kernel, stride, padding, groups). Returns (median ms, std ms). Module-level and on
    plain data so that it pickles to any executor.
    """
    import tempfile

    import jax
    import jax.numpy as jnp

    from combax.adapters.export import export_onnx
    from combax.adapters.latency import measure

    cin, cout, k, s, pad, groups = conv
    rng = np.random.default_rng(list(seed))
    fan_in = k * k * cin // groups
    params = {
        "w": (rng.standard_normal((k, k, cin // groups, cout)) * np.sqrt(2.0 / fan_in)).astype(np.float32),
        "b": (0.1 * rng.standard_normal(cout)).astype(np.float32),
    }
    x = rng.standard_normal(in_shape).astype(np.float32)

    def apply(p, h):
        h = jax.lax.conv_general_dilated(
            h, p["w"], (s, s), ((pad, pad), (pad, pad)), dimension_numbers=("NHWC", "HWIO", "NHWC"),
            feature_group_count=groups,
        )  # fmt: skip
        h = h + p["b"]
        h = jnp.clip(h, 0.0, 6.0) if activation == "relu6" else jnp.maximum(h, 0.0)
        if pool:
            h = jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
        return h

    if backend == "xla":
        t = measure((apply, params), x, backend="xla", warmup=warmup, runs=runs, threads=threads)
    else:
        with tempfile.TemporaryDirectory(prefix="combax-block-") as d:
            path = export_onnx(apply, params, x, pathlib.Path(d) / "block.onnx")
            t = measure(path, x, backend=backend, warmup=warmup, runs=runs, threads=threads)
    return float(t.median_ms), float(t.std_ms)


def _latency_iv(spec, hw, batch, backend, warmup, runs, threads, blocks, executor):
    if not isinstance(spec, ChainSpec):
        raise ValueError(f"`spec` must be a ChainSpec; got {type(spec).__name__}")
    hw = _check_hw(spec, hw)
    if not _is_int(batch, 1):
        raise ValueError(f"`batch` must be an integer >= 1; got {batch!r}")
    if backend not in _BACKENDS:
        raise ValueError(f"`backend` must be one of {_BACKENDS}; got {backend!r}")
    if not _is_int(warmup, 0):
        raise ValueError(f"`warmup` must be an integer >= 0; got {warmup!r}")
    if not _is_int(runs, 1):
        raise ValueError(f"`runs` must be an integer >= 1; got {runs!r}")
    if threads is not None and not _is_int(threads, 1):
        raise ValueError(f"`threads` must be None or an integer >= 1; got {threads!r}")
    if executor is not None and not callable(getattr(executor, "submit", None)):
        raise ValueError(f"`executor` must be a concurrent.futures.Executor or None; got {type(executor).__name__}")
    return hw, int(batch), _check_blocks(spec, blocks)


def latency_table(
    spec: ChainSpec,
    *,
    hw: int,
    batch: int = 8,
    backend: str = "onnxruntime",
    warmup: int = 5,
    runs: int = 20,
    threads: int | None = 1,
    blocks=None,
    executor: Executor | None = None,
    progress: bool = True,
    seed: int = 0,
) -> LatencyTable:
    """Time every valid merged block (i, j] of ``spec``: the latency table T of the depth-compression DP.

    Parameters
    ----------
    spec : the chain CNN.
    hw : input image size (square, before the stem); fixes the feature shape at each position.
    batch : batch size of the timed input (the paper: 128 for MobileNetV2, 64 for VGG19).
    backend : ``"onnxruntime"`` (default, CPU), ``"xla"`` (jitted JAX) or ``"tensorrt"`` (FP32 engine on a GPU).
    warmup, runs : untimed and timed calls per block.
    threads : onnxruntime intra-op threads (1 by default: a reproducible single-core table).
    blocks : iterable of (i, j) to time (each must be valid); None = every valid block.
    executor : a :class:`concurrent.futures.Executor` to spread blocks over (one task per block); None = run
        in this process, one block after the other.
    progress : show a tqdm progress bar.
    seed : seed of the random weights and inputs (block (i, j] uses ``[seed, i, j]``).

    Returns
    -------
    LatencyTable
        ``latency`` = median ms per batch, ``spread`` = standard deviation in ms, NaN off the timed blocks.

    Raises
    ------
    ValueError
        ``hw`` too small for the strides/pools, ``batch`` < 1, unknown ``backend``, ``warmup`` < 0, ``runs`` < 1,
        bad ``threads``, ``blocks`` that are not valid blocks, an ``executor`` without ``submit``.
    ImportError
        The backend's package is missing (extra ``onnx`` for onnxruntime, ``tensorrt`` for TensorRT).

    Notes
    -----
    What is timed: ``merged_conv -> activation``, plus the 2x2 max-pool when j is a pool position (so block
    latencies add up to the stack's latency; see the module docstring). Residual adds are not timed (they are folded
    into a merged conv that spans the residual, and cost one elementwise add otherwise).

    Cost: one ONNX export, one session build and ``warmup + runs`` forward passes per block (171 blocks on
    MobileNetV2, 36 on VGG19; MobileNetV2-0.5 at ``hw=32``, batch 8, one thread: about 8 s in all on a 2-core
    CPU). Parallel executors on one machine make the timed processes contend for cores: use
    them across identical machines.
    """
    hw, batch, todo = _latency_iv(spec, hw, batch, backend, warmup, runs, threads, blocks, executor)
    threads = None if threads is None else int(threads)
    shapes = spec.feature_shapes(hw)
    tasks = []
    for i, j in todo:
        c = spec.merged_conv(i, j)
        conv = (c.in_ch, c.out_ch, c.kernel, c.stride, c.padding, c.groups)
        in_shape = (batch, *shapes[i])
        tasks.append(
            (conv, spec.activation, j in spec.pools, in_shape, backend, int(warmup), int(runs), threads,
             (int(seed), i, j))
        )  # fmt: skip
    results = _run_tasks(_time_block_task, tasks, executor, progress, f"latency {spec.name}")
    n = spec.L + 1
    lat = np.full((n, n), np.nan)
    spread = np.full((n, n), np.nan)
    for (i, j), (med, std) in zip(todo, results):
        lat[i, j], spread[i, j] = med, std
    return LatencyTable(lat, spread, backend, batch, hw, threads, spec.name)


# -- importance ----------------------------------------------------------------------------------------------------
_EVAL_BATCH = 256


def _to_numpy_tree(variables) -> dict:
    import jax

    return jax.tree_util.tree_map(lambda a: np.asarray(a), _plain(variables))


def _plain(tree):
    if hasattr(tree, "items"):
        return {str(k): _plain(v) for k, v in tree.items()}
    return tree


def _variant_mask(spec: ChainSpec, i: int, j: int, x: int, y: int) -> np.ndarray:
    """act_mask (length L+1) of entry (i, j, x, y): default activations, none inside (i, j), flags at i and j."""
    m = np.zeros(spec.L + 1, dtype=np.float32)
    m[list(spec.default_acts)] = 1.0
    m[i + 1 : j] = 0.0
    if i > 0:
        m[i] = float(x)
    m[j] = float(y)
    return m


def _variant_structure(spec: ChainSpec, i: int, j: int, x: int, y: int):
    """(acts, cuts) of entry (i, j, x, y) for the fine-tune method: cuts everywhere except strictly inside (i, j)."""
    allowed = set(spec.allowed_acts)
    acts = {a for a in spec.default_acts if not i < a < j}
    for p, flag in ((i, x), (j, y)):
        if p > 0:
            if flag and p in allowed:
                acts.add(p)
            else:
                acts.discard(p)
    cuts = [p for p in range(1, spec.L) if not i < p < j]
    return spec.check_structure(acts, cuts)


_SCORE_FNS: dict = {}


def _score_fn(spec: ChainSpec, structure=None):
    """Jitted ``(variables, xb, yb, w, mask) -> (correct, ce_sum)``; cached per (spec, structure) in the process."""
    key = (spec, structure)
    fn = _SCORE_FNS.get(key)
    if fn is None:
        import jax
        import jax.numpy as jnp
        import optax

        if structure is None:
            model = ChainNet(spec)
        else:
            model = ChainNet(spec, acts=structure[0], cuts=structure[1])

        def f(variables, xb, yb, w, mask):
            if structure is None:
                logits = model.apply(variables, xb, train=False, act_mask=mask)
            else:
                logits = model.apply(variables, xb, train=False)
            correct = jnp.sum((jnp.argmax(logits, axis=-1) == yb) * w)
            ce = jnp.sum(optax.softmax_cross_entropy_with_integer_labels(logits, yb) * w)
            return correct, ce

        if len(_SCORE_FNS) >= 16:  # fine-tune entries each bring a structure: keep the cache bounded
            _SCORE_FNS.clear()
        fn = _SCORE_FNS[key] = jax.jit(f)
    return fn


def _score(spec, variables, x, y, score: str, mask=None, structure=None) -> float:
    """Accuracy (fraction) or mean cross-entropy on (x, y), in fixed-size padded batches (one compile)."""
    fn = _score_fn(spec, structure)
    n = x.shape[0]
    bs = min(_EVAL_BATCH, n)
    if mask is None:
        mask = np.zeros(spec.L + 1, np.float32)
    correct, ce = 0.0, 0.0
    for s in range(0, n, bs):
        xb, yb = x[s : s + bs], y[s : s + bs]
        w = np.ones(bs, np.float32)
        if xb.shape[0] < bs:
            k = bs - xb.shape[0]
            w[bs - k :] = 0.0
            xb = np.concatenate([xb, np.zeros((k, *xb.shape[1:]), xb.dtype)])
            yb = np.concatenate([yb, np.zeros(k, yb.dtype)])
        c, e = fn(variables, xb, yb, w, mask)
        correct += float(c)
        ce += float(e)
    return correct / n if score == "accuracy" else ce / n


def _proxy_task(spec: ChainSpec, variables: dict, x_val, y_val, score: str, entries) -> list[float]:
    """Scores of a chunk of entries (i, j, x, y) under the no-fine-tune proxy. Module-level: pickles."""
    return [_score(spec, variables, x_val, y_val, score, mask=_variant_mask(spec, *e)) for e in entries]


def _reinit_single(variables: dict, spec: ChainSpec, p: int, seed: tuple[int, ...]) -> dict:
    """Copy of ``variables`` with conv{p} re-drawn He-normal and bn{p} reset (scale 1, bias 0, mean 0, var 1)."""
    rng = np.random.default_rng(list(seed))
    params = dict(variables["params"])
    stats = dict(variables.get("batch_stats", {}))
    conv = dict(params[f"conv{p}"])
    k = conv["kernel"]
    conv["kernel"] = (rng.standard_normal(k.shape) * np.sqrt(2.0 / max(1, int(np.prod(k.shape[:-1]))))).astype(k.dtype)
    params[f"conv{p}"] = conv
    bn = dict(params[f"bn{p}"])
    params[f"bn{p}"] = {"scale": np.ones_like(bn["scale"]), "bias": np.zeros_like(bn["bias"])}
    if f"bn{p}" in stats:
        st = stats[f"bn{p}"]
        stats[f"bn{p}"] = {"mean": np.zeros_like(st["mean"]), "var": np.ones_like(st["var"])}
    return {"params": params, "batch_stats": stats}


def _finetune_task(spec: ChainSpec, variables: dict, x_val, y_val, score: str, x_train, y_train, config: dict, entry):
    """Score of one entry after re-initialising a single-layer block and fine-tuning. Module-level: pickles."""
    from combax.models.classifier_train import fit

    i, j, x, y = entry
    cfg = TrainConfig(**{**config, "progress": False})
    acts, cuts = _variant_structure(spec, i, j, x, y)
    v = variables
    if j == i + 1:
        v = _reinit_single(v, spec, j, (cfg.seed, i, j, x, y))
    model = ChainNet(spec, acts=acts, cuts=cuts)
    v = fit(model, x_train, y_train, cfg, variables=v, desc=f"finetune ({i},{j}]")
    v = _to_numpy_tree(v)
    return _score(spec, v, x_val, y_val, score, structure=(acts, cuts))


def _check_variables(spec: ChainSpec, variables) -> dict:
    v = _plain(variables)
    if not isinstance(v, dict) or "params" not in v:
        raise ValueError("`variables` must be a dict with 'params' (and 'batch_stats'), e.g. from `fit`")
    params = v["params"]
    missing = [f"conv{p}" for p in range(1, spec.L + 1) if f"conv{p}" not in params]
    missing += [f"bn{p}" for p in range(1, spec.L + 1) if f"bn{p}" not in params]
    if missing:
        raise ValueError(
            f"`variables` do not match {spec.name}: params {missing[:5]}{' ...' if len(missing) > 5 else ''} are "
            "missing; pass the variables of `model` (trained or from `init_variables(model, ...)`)"
        )
    for p, c in enumerate(spec.convs, start=1):
        want = (c.kernel, c.kernel, c.in_ch // c.groups, c.out_ch)
        got = tuple(np.shape(params[f"conv{p}"]["kernel"]))
        if got != want:
            raise ValueError(f"`variables` do not match {spec.name}: conv{p} kernel has shape {got}, expected {want}")
    if "batch_stats" not in v:
        raise ValueError("`variables` must hold 'batch_stats' (the batch-norm running statistics)")
    return _to_numpy_tree(v)


def _check_xy(spec: ChainSpec, x, y, xname: str, yname: str):
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y)
    if x.ndim != 4 or x.shape[0] == 0 or x.shape[1] != x.shape[2] or x.shape[3] != spec.in_channels:
        raise ValueError(
            f"`{xname}` must be (N, H, H, {spec.in_channels}) images with N >= 1 for {spec.name}; got shape {x.shape}"
        )
    if y.shape != (x.shape[0],):
        raise ValueError(f"`{yname}` must have shape ({x.shape[0]},) to match `{xname}`; got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= spec.n_classes:
        raise ValueError(f"`{yname}` must hold integer labels in 0..{spec.n_classes - 1}")
    try:
        _check_hw(spec, x.shape[1])
    except ValueError as exc:
        raise ValueError(f"`{xname}`: images of size {x.shape[1]} are too small for {spec.name} ({exc})") from None
    return x, y.astype(np.int32)


def _importance_iv(model, variables, x_val, y_val, method, score, x_train, y_train, finetune, executor, chunk):
    if not isinstance(model, ChainNet):
        raise ValueError(f"`model` must be a ChainNet; got {type(model).__name__}")
    spec = model.spec
    if method not in _METHODS:
        raise ValueError(f"`method` must be one of {_METHODS}; got {method!r}")
    if score not in _SCORES:
        raise ValueError(f"`score` must be one of {_SCORES}; got {score!r}")
    if not _is_int(chunk, 1):
        raise ValueError(f"`chunk` must be an integer >= 1; got {chunk!r}")
    if executor is not None and not callable(getattr(executor, "submit", None)):
        raise ValueError(f"`executor` must be a concurrent.futures.Executor or None; got {type(executor).__name__}")
    variables = _check_variables(spec, variables)
    x_val, y_val = _check_xy(spec, x_val, y_val, "x_val", "y_val")
    train = None
    if method == "finetune":
        missing = [n for n, v in (("x_train", x_train), ("y_train", y_train), ("finetune", finetune)) if v is None]
        if missing:
            raise ValueError(
                f"method='finetune' needs {', '.join(f'`{m}`' for m in missing)}: pass the training split and a "
                "TrainConfig (e.g. TrainConfig(epochs=1, batch_size=64, lr=0.01)), or use method='proxy'"
            )
        if not isinstance(finetune, TrainConfig):
            raise ValueError(f"`finetune` must be a TrainConfig; got {type(finetune).__name__}")
        x_train, y_train = _check_xy(spec, x_train, y_train, "x_train", "y_train")
        if finetune.batch_size > x_train.shape[0]:
            raise ValueError(
                f"`finetune.batch_size` ({finetune.batch_size}) exceeds the number of training examples "
                f"({x_train.shape[0]}); lower it"
            )
        train = (x_train, y_train, {f.name: getattr(finetune, f.name) for f in dataclasses.fields(finetune)})
    return spec, variables, x_val, y_val, train


def importance_table(
    model: ChainNet,
    variables: Any,
    x_val,
    y_val,
    *,
    method: str = "proxy",
    score: str = "accuracy",
    x_train=None,
    y_train=None,
    finetune: TrainConfig | None = None,
    blocks=None,
    executor: Executor | None = None,
    progress: bool = True,
    chunk: int = 16,
) -> ImportanceTable:
    """Measure the raw importance h[i, j, x, y] of every allowed quadruple: the importance table of the DP.

    .. math::

        h[i, j, x, y] = \\text{score}(f_{i,j,x,y}) - \\text{score}(f_{\\text{base}}),
        \\qquad (i, j, x, y) \\in E

    Parameters
    ----------
    model : the trained :class:`~combax.models.chain.ChainNet` (only its ``spec`` is used).
    variables : its ``{"params", "batch_stats"}``.
    x_val, y_val : (N, H, H, C) float images and (N,) int labels; the held-out split h is measured on.
    method : ``"proxy"`` (no fine-tuning, one shared compiled function) or ``"finetune"`` (spec protocol scaled down;
        needs ``x_train``, ``y_train`` and ``finetune``).
    score : ``"accuracy"`` (fraction in [0, 1], so h is in [-1, 1]) or ``"loss"`` (mean cross-entropy; h = base loss
        - loss, so higher is better in both).
    x_train, y_train : training split for ``method="finetune"``.
    finetune : :class:`~combax.models.classifier_train.TrainConfig` of each entry's fine-tune (its ``progress`` is
        ignored; its ``seed`` seeds shuffling and the re-initialisation).
    blocks : iterable of valid (i, j); only their quadruples are measured. None = every valid block.
    executor : a :class:`concurrent.futures.Executor` (process pool, Dask ``Client.get_executor()``); None = in this
        process. Variables and data travel with each task as NumPy arrays.
    progress : show a tqdm progress bar (one tick per task).
    chunk : quadruples per task for ``"proxy"`` (fewer, bigger tasks). ``"finetune"`` runs one entry per task.

    Returns
    -------
    ImportanceTable
        ``importance`` (L+1, L+1, 2, 2), finite exactly on the measured quadruples; ``base_score``.

    Raises
    ------
    ValueError
        Unknown ``method``/``score``, ``chunk`` < 1, ``variables`` not matching the spec (a missing or mis-shaped
        ``conv{p}``), ``x_val``/``y_val`` (or ``x_train``/``y_train``) of the wrong shape or labels, missing
        fine-tune inputs, ``blocks`` that are not valid.

    Notes
    -----
    E is :func:`combax.solvers.depth.allowed_flags` (``spec.valid_blocks()``, ``spec.optional``,
    ``exclude_zeros=True``): (1, 1) for every block; also x = 0 when i is optional; else y = 0 when j is optional;
    only (1, 1) when i = 0 (position 0 is the stem's output and always keeps its activation).

    Cost: ``|E|`` evaluations of N images (315 on MobileNetV2) plus the base. ``"proxy"`` compiles one function per
    process. ``"finetune"`` adds one compile and ``finetune.epochs * N_train / batch_size`` SGD steps per entry.
    The proxy is deterministic, so its values do not depend on the executor or ``chunk``. Measured: MobileNetV2-0.5
    (stem stride 1) on 1000 32x32 images, about 11 s per entry on a shared, loaded 2-core CPU (about an hour for
    the 316 evaluations): subsample the validation split or spread the entries over an executor.
    """
    from combax.solvers.depth import allowed_flags

    spec, variables, x_val, y_val, train = _importance_iv(
        model, variables, x_val, y_val, method, score, x_train, y_train, finetune, executor, chunk
    )
    todo = _check_blocks(spec, blocks)
    n = spec.L + 1
    valid = np.zeros((n, n), dtype=bool)
    for i, j in todo:
        valid[i, j] = True
    E = allowed_flags(valid, spec.optional, exclude_zeros=True)
    entries = [tuple(int(v) for v in e) for e in np.argwhere(E)]
    if method == "proxy":
        base_mask = np.zeros(n, dtype=np.float32)
        base_mask[list(spec.default_acts)] = 1.0
        base = _score(spec, variables, x_val, y_val, score, mask=base_mask)
        chunks = [entries[k : k + int(chunk)] for k in range(0, len(entries), int(chunk))]
        tasks = [(spec, variables, x_val, y_val, score, c) for c in chunks]
        out = _run_tasks(_proxy_task, tasks, executor, progress, f"importance {spec.name}")
        scores = [s for part in out for s in part]
    else:
        A0, S0 = spec.default_structure()
        base = _score(spec, variables, x_val, y_val, score, structure=(A0, S0))
        x_tr, y_tr, cfg = train
        tasks = [(spec, variables, x_val, y_val, score, x_tr, y_tr, cfg, e) for e in entries]
        scores = _run_tasks(_finetune_task, tasks, executor, progress, f"importance {spec.name} (finetune)")
    h = np.full((n, n, 2, 2), np.nan)
    sign = 1.0 if score == "accuracy" else -1.0
    for e, s in zip(entries, scores):
        h[e] = sign * (s - base)
    return ImportanceTable(h, float(base), method, score, spec.name)


# -- problem -------------------------------------------------------------------------------------------------------
def depth_problem(latency: LatencyTable, importance: ImportanceTable, spec: ChainSpec, *, alpha: float = 0.0):
    """The :class:`combax.solvers.depth.DepthProblem` of ``spec`` from its two tables.

    ``DepthProblem(latency.latency, importance.normalised(alpha), spec.optional)``.

    Raises
    ------
    ValueError
        A table of another network (``spec_name`` differs from ``spec.name``) or of another depth (L), or a
        non-finite ``alpha``.
    """
    from combax.solvers.depth import DepthProblem

    if not isinstance(latency, LatencyTable):
        raise ValueError(f"`latency` must be a LatencyTable; got {type(latency).__name__}")
    if not isinstance(importance, ImportanceTable):
        raise ValueError(f"`importance` must be an ImportanceTable; got {type(importance).__name__}")
    n = spec.L + 1
    for name, table in (("latency", latency), ("importance", importance)):
        if table.spec_name != spec.name:
            raise ValueError(
                f"`{name}` was built for {table.spec_name!r}, not for `spec` {spec.name!r}; build it from this spec"
            )
    if latency.latency.shape != (n, n):
        raise ValueError(f"`latency` has shape {latency.latency.shape}; `spec` has L = {spec.L}, expected {(n, n)}")
    if importance.importance.shape != (n, n, 2, 2):
        raise ValueError(
            f"`importance` has shape {importance.importance.shape}; `spec` has L = {spec.L}, expected {(n, n, 2, 2)}"
        )
    return DepthProblem(latency.latency, importance.normalised(alpha), tuple(spec.optional))
