r"""Depth compression end to end: train (or load) a chain CNN, measure both tables, solve, fine-tune, merge, time.

:func:`run_compress` is what ``combax depth compress`` runs, in stages that print their progress:

(a) the data set: MNIST-5k zero-padded to ``hw`` x ``hw`` (or sklearn digits 8x8), split stratified into train /
    val / test (importance is measured on val, accuracy is reported on the held-out test split);
(b) the base network (MobileNetV2 or VGG as a :class:`~combax.models.chain.ChainNet`), trained with
    :func:`combax.models.classifier_train.fit` or loaded from its msgpack checkpoint in the output folder;
(c) the latency table ``T`` (every valid merged block timed alone) and the importance table ``h`` (every allowed
    activation segment scored on val) from :mod:`combax.adapters.tables`;
(d) the :class:`~combax.solvers.depth.DepthProblem`, its exact Pareto front, and for each budget the solved
    (A, S);
(e) fine-tuning of each chosen structure from the base weights (``ChainNet(spec, A, S)``: activations outside A
    removed, padding re-parameterised so that merging is exact);
(f) merging (:func:`combax.adapters.merge.merge`), the check merged == unmerged on test inputs, ONNX export;
(g) end-to-end latency of the base network (merged with its own structure, i.e. BN folded, exported the same way)
    and of every compressed network, with one backend in one process: several rounds over all networks in a
    shuffled order, the median per round, the median of the round medians reported (wall clock, and process CPU
    time as a load-robust companion);
(h) the DepthShrinker-style baseline (Fu et al., ICML 2022; spec §4.2): whole inverted-residual blocks merged into
    one conv each with a ReLU6 added at the block end, blocks picked greedily by their latency saving in the
    table until the predicted latency matches the DP choice's, fine-tuned, merged, timed and evaluated alike;
(i) the report: JSON, Markdown and a plot of test accuracy against measured speed-up.

Bad input fails before any long work: unknown options, a model that is not a chain, tables of the wrong shape,
(A, S) that are not valid for the network, and budgets below the fastest reachable network (checked as soon as the
latency table exists, before the base network is trained).

Reference: J. Kim, Y. Jeong, D. Lee, H. O. Song, "Efficient Latency-Aware CNN Depth Compression via Two-Stage
Dynamic Programming", ICML 2023, arXiv 2301.12187. Specification: ``specs/depth_dp.md`` (§1.5, §3, §4.2).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from combax.adapters._json import json_ready
from combax.adapters.checkpoint import load_checkpoint, save_checkpoint, to_numpy
from combax.models.classifier_train import TrainConfig

__all__ = [
    "MODELS",
    "DATASETS",
    "CompressConfig",
    "CompressReport",
    "validate_config",
    "build_spec",
    "load_data",
    "check_chain",
    "check_tables",
    "min_stack_latency",
    "budgets_ms",
    "depthshrinker_blocks",
    "depthshrinker_structure",
    "save_checkpoint",
    "load_checkpoint",
    "run_compress",
    "write_report",
    "plot_report",
]

MODELS = ("mobilenetv2", "vgg")
DATASETS = ("mnist5k", "digits")
_BUDGET_UNITS = ("fraction", "ms")
_BACKENDS = ("onnxruntime", "xla")
_NOT_CHAIN = ("resnet", "densenet", "inception", "efficientnet", "unet")


@dataclass(frozen=True, slots=True)
class CompressConfig:
    """Settings of :func:`run_compress` (the ``combax depth compress`` options).

    Attributes
    ----------
    model : ``"mobilenetv2"`` or ``"vgg"`` (a chain CNN; anything with branches is rejected).
    width : channel multiplier.
    data : ``"mnist5k"`` (zero-padded to ``hw``) or ``"digits"`` (8x8).
    hw : input size for MNIST-5k (>= 28); None = 32 for mnist5k, 8 for digits.
    stem_stride : stride of the MobileNetV2 stem conv (1 keeps 32x32 MNIST large; 2 as on ImageNet).
    settings : MobileNetV2 ``(t, c, n, s)`` rows (None = the paper's Table 2); small subsets make tiny test nets.
    vgg_depth : 11, 13, 16 or 19 (``model="vgg"``).
    budgets : latency budgets, fractions of the base stack latency (``budget_unit="fraction"``: the sum of the
        single-conv entries of the latency table) or milliseconds in table units (``"ms"``).
    budget_unit : ``"fraction"`` or ``"ms"``.
    train : :class:`~combax.models.classifier_train.TrainConfig` of the base network (unused when the checkpoint
        in ``out`` matches).
    finetune : TrainConfig of every compressed network (DP choices and baseline alike).
    val_fraction, test_fraction : of the whole data set (stratified).
    max_train : use at most this many training examples (None = all; small values make tiny test runs).
    table_batch, table_warmup, table_runs : latency-table timing (batch, warm-up and timed runs per block).
    timing_batch, timing_warmup, timing_runs, timing_rounds : end-to-end timing; every round times every network
        once (``timing_runs`` calls) in a shuffled order, and the median of the round medians is reported.
    threads : onnxruntime intra-op threads, for the table and the end-to-end timing alike.
    backend : ``"onnxruntime"`` (default) or ``"xla"``, for both as well.
    importance_method, importance_score : passed to :func:`combax.adapters.tables.importance_table`.
    importance_chunk : activation patterns scored per compiled call (proxy method).
    alpha : the spec's single-layer normalisation ``I = h - alpha * mean(h over single-layer entries)``.
    baseline : also run the DepthShrinker-style block-merging baseline at matched latency (MobileNetV2 only).
    control : also fine-tune the *uncompressed* base network with the fine-tuning config (same steps), so that
        accuracy gained by the extra training is not mistaken for a property of the compressed structure; reported
        as ``base["finetuned_accuracy"]`` (not timed: same structure as the base).
    acts, cuts : an extra user-given structure (A, S) to fine-tune, merge and time beside the solved ones
        (None = none); validated before any work.
    seed : split, initialisation, shuffling and timing-order seed.
    out : output folder (checkpoint, tables, ONNX files, report); None = write nothing.
    progress : stage lines and progress bars.
    """

    model: str = "mobilenetv2"
    width: float = 0.5
    data: str = "mnist5k"
    hw: int | None = None
    stem_stride: int = 1
    settings: tuple | None = None
    vgg_depth: int = 11
    budgets: tuple[float, ...] = (0.8, 0.65, 0.5)
    budget_unit: str = "fraction"
    train: TrainConfig = TrainConfig(epochs=4, batch_size=64, lr=0.05, weight_decay=1e-4, warmup_steps=50)
    finetune: TrainConfig = TrainConfig(epochs=2, batch_size=64, lr=0.01, weight_decay=1e-4, warmup_steps=0)
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    max_train: int | None = None
    table_batch: int = 8
    table_warmup: int = 5
    table_runs: int = 20
    timing_batch: int = 8
    timing_warmup: int = 10
    timing_runs: int = 30
    timing_rounds: int = 5
    threads: int | None = 1
    backend: str = "onnxruntime"
    importance_method: str = "proxy"
    importance_score: str = "accuracy"
    importance_chunk: int = 16
    alpha: float = 0.0
    baseline: bool = True
    control: bool = True
    acts: tuple[int, ...] | None = None
    cuts: tuple[int, ...] | None = None
    seed: int = 0
    out: str | None = "compress_out"
    progress: bool = True


@dataclass(frozen=True, slots=True)
class CompressReport:
    """What :func:`run_compress` found (plain Python values; :meth:`to_dict` is the JSON report).

    Attributes
    ----------
    config : the :class:`CompressConfig`.
    network : name, L, number of valid blocks, input shape, split sizes.
    base : the base network: test / val accuracy, measured latency (ms and the per-round medians), convs after
        BN folding, stack latency in table units (sum of the single-conv entries), merged == unmerged check.
    tables : latency / importance table summaries (entries, seconds, backend, batch, threads, base score).
    front : the exact Pareto front of the surrogate, ``[[latency, objective], ...]``.
    min_latency : the fastest reachable stack latency (table units).
    runs : one dict per budget: ``budget`` (fraction), ``budget_ms``, ``dp`` and ``baseline`` (each a network dict:
        acts, cuts, predicted_latency_ms, objective, accuracy_before_finetune, accuracy, val_accuracy,
        merged_max_abs_diff (float32) and merged_max_abs_diff_f64 (float64 arithmetic), onnx_max_abs_diff, n_convs,
        latency_ms (wall clock) and cpu_ms (process CPU time) with their per-round medians, speedup, speedup_cpu,
        drop_points,
        onnx); ``baseline`` also holds ``blocks`` and ``matched`` (its predicted latency <= the DP's).
    extra : the user-given structure's network dict, or None.
    seconds : wall time per stage and in total.
    """

    config: CompressConfig
    network: dict
    base: dict
    tables: dict
    front: list
    min_latency: float
    runs: list
    extra: dict | None
    seconds: dict

    def to_dict(self) -> dict:
        """A JSON-ready dict (NaN and inf become None)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["config"] = dataclasses.asdict(self.config)
        return json_ready(out)


# ---------------------------------------------------------------------------------------------------------- checks
def _positive_int(name, value, minimum=1):
    if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}; got {value!r}")


def validate_config(config: CompressConfig) -> CompressConfig:
    """Check every option before any long work; raises ValueError naming the option and the fix."""
    if not isinstance(config, CompressConfig):
        raise ValueError(f"`config` must be a CompressConfig; got {type(config).__name__}")
    name = str(config.model).lower()
    if any(name.startswith(p) for p in _NOT_CHAIN):
        raise ValueError(
            f"`model` {config.model!r} is not a chain CNN (it has branches or concatenations); depth compression "
            f"merges consecutive convs of a chain: use one of {MODELS}"
        )
    if config.model not in MODELS:
        raise ValueError(f"`model` must be one of {MODELS}; got {config.model!r}")
    if config.data not in DATASETS:
        raise ValueError(f"`data` must be one of {DATASETS}; got {config.data!r}")
    if not (isinstance(config.width, int | float) and math.isfinite(config.width) and config.width > 0):
        raise ValueError(f"`width` must be a number > 0; got {config.width!r}")
    if config.hw is not None:
        if config.data == "digits" and config.hw != 8:
            raise ValueError(f"`hw` must be 8 (or None) for data 'digits'; got {config.hw}")
        if config.data == "mnist5k" and (not isinstance(config.hw, int) or config.hw < 28):
            raise ValueError(f"`hw` must be an integer >= 28 for data 'mnist5k' (images are 28x28); got {config.hw}")
    if config.stem_stride not in (1, 2):
        raise ValueError(f"`stem_stride` must be 1 or 2; got {config.stem_stride!r}")
    if config.model == "vgg" and config.vgg_depth not in (11, 13, 16, 19):
        raise ValueError(f"`vgg_depth` must be 11, 13, 16 or 19; got {config.vgg_depth!r}")
    if config.budget_unit not in _BUDGET_UNITS:
        raise ValueError(f"`budget_unit` must be one of {_BUDGET_UNITS}; got {config.budget_unit!r}")
    budgets = tuple(config.budgets)
    if not budgets:
        raise ValueError("`budgets` must hold at least one latency budget; got none")
    for b in budgets:
        if not (isinstance(b, int | float) and math.isfinite(b) and b > 0):
            raise ValueError(f"`budgets` must be finite numbers > 0; got {b!r}")
        if config.budget_unit == "fraction" and b > 1.0:
            raise ValueError(
                f"`budgets` are fractions of the base stack latency and must lie in (0, 1]; got {b} "
                "(use budget_unit='ms' for milliseconds)"
            )
    for key in ("train", "finetune"):
        tc = getattr(config, key)
        if not isinstance(tc, TrainConfig):
            raise ValueError(f"`{key}` must be a TrainConfig; got {type(tc).__name__}")
        if tc.epochs < 0 or tc.batch_size < 1 or not tc.lr > 0:
            raise ValueError(f"`{key}` needs epochs >= 0, batch_size >= 1 and lr > 0; got {tc}")
    for key in ("val_fraction", "test_fraction"):
        v = getattr(config, key)
        if not 0.0 < v < 1.0:
            raise ValueError(f"`{key}` must lie strictly between 0 and 1; got {v}")
    if config.val_fraction + config.test_fraction >= 0.9:
        raise ValueError("`val_fraction` + `test_fraction` must stay below 0.9 (the rest is the training set)")
    if config.max_train is not None:
        _positive_int("max_train", config.max_train, 10)
    for key in ("table_batch", "table_runs", "timing_batch", "timing_runs", "timing_rounds", "importance_chunk"):
        _positive_int(key, getattr(config, key))
    for key in ("table_warmup", "timing_warmup"):
        _positive_int(key, getattr(config, key), 0)
    if config.threads is not None:
        _positive_int("threads", config.threads)
    if config.backend not in _BACKENDS:
        raise ValueError(f"`backend` must be one of {_BACKENDS}; got {config.backend!r}")
    if not (isinstance(config.alpha, int | float) and math.isfinite(config.alpha)):
        raise ValueError(f"`alpha` must be a finite number; got {config.alpha!r}")
    if (config.acts is None) != (config.cuts is None):
        raise ValueError("`acts` and `cuts` must be given together (an extra structure (A, S)) or both left None")
    if config.out is not None and Path(config.out).is_file():
        raise ValueError(f"`out` must be a folder; got the file {config.out!r}")
    return config


def build_spec(config: CompressConfig, n_classes: int = 10, in_channels: int = 1):
    """The :class:`~combax.models.chain.ChainSpec` of the configured network."""
    if config.model == "mobilenetv2":
        from combax.models.mobilenetv2 import SETTINGS, mobilenetv2_spec

        settings = SETTINGS if config.settings is None else tuple(tuple(int(v) for v in r) for r in config.settings)
        return mobilenetv2_spec(config.width, n_classes=n_classes, in_channels=in_channels,
                                stem_stride=config.stem_stride, settings=settings)  # fmt: skip
    if config.model == "vgg":
        from combax.models.vgg import vgg_spec

        return vgg_spec(config.vgg_depth, config.width, n_classes=n_classes, in_channels=in_channels)
    raise ValueError(f"`model` must be one of {MODELS}; got {config.model!r}")


def check_chain(model) -> None:
    """Raise ValueError unless ``model`` is a combax chain CNN (:class:`~combax.models.chain.ChainNet`)."""
    from combax.models.chain import ChainNet

    if not isinstance(model, ChainNet):
        raise ValueError(
            f"`model` must be a chain CNN (a combax ChainNet: stem, a chain of convs with laminar residuals, head); "
            f"got {type(model).__name__}, which depth compression cannot merge"
        )


def load_data(config: CompressConfig):
    """``(x_train, y_train, x_val, y_val, x_test, y_test)``, stratified; MNIST-5k zero-padded to ``hw``."""
    from combax import data

    if config.data == "mnist5k":
        ds = data.pad_to(data.mnist5k(), config.hw or 32)
    elif config.data == "digits":
        ds = data.digits()
    else:
        raise ValueError(f"`data` must be one of {DATASETS}; got {config.data!r}")
    x, y = ds.images.astype(np.float32), ds.labels.astype(np.int32)
    rest, te = data.stratified_split(y, config.test_fraction, seed=config.seed)
    tr, va = data.stratified_split(y[rest], config.val_fraction / (1.0 - config.test_fraction), seed=config.seed + 1)
    tr, va = rest[tr], rest[va]
    if config.max_train is not None and tr.size > config.max_train:
        tr = np.sort(np.random.default_rng(config.seed).permutation(tr)[: config.max_train])
    return x[tr], y[tr], x[va], y[va], x[te], y[te]


def _table_array(table, name: str) -> np.ndarray:
    arr = getattr(table, name, table)
    return np.asarray(arr, dtype=np.float64)


def check_tables(spec, latency=None, importance=None) -> None:
    """Check that the tables fit the network: latency (L+1, L+1), importance (L+1, L+1, 2, 2) or (L+1, L+1),
    finite (latency >= 0) on every valid block of ``spec``. Raises ValueError naming the table."""
    n = spec.L + 1
    valid = spec._valid_matrix()
    for name, table in (("latency", latency), ("importance", importance)):
        built_for = getattr(table, "spec_name", None)
        if built_for is not None and built_for != spec.name:
            raise ValueError(f"`{name}` table was built for {built_for!r}, not for {spec.name!r}; build it for this "
                             "network")  # fmt: skip
    if latency is not None:
        T = _table_array(latency, "latency")
        if T.shape != (n, n):
            raise ValueError(
                f"`latency` table has shape {T.shape}, but {spec.name} has L = {spec.L} convs: expected ({n}, {n}) "
                "(measure it for this network)"
            )
        bad = valid & ~(np.isfinite(T) & (T >= 0))
        if bad.any():
            i, j = np.argwhere(bad)[0]
            raise ValueError(
                f"`latency` table has no finite non-negative entry for the valid block ({i}, {j}] of {spec.name} "
                f"({int(bad.sum())} such blocks); it was measured for another network"
            )
    if importance is not None:
        h = _table_array(importance, "importance")
        if h.shape not in ((n, n, 2, 2), (n, n)):
            raise ValueError(
                f"`importance` table has shape {h.shape}, but {spec.name} has L = {spec.L} convs: expected "
                f"({n}, {n}, 2, 2) or ({n}, {n})"
            )


def min_stack_latency(latency) -> float:
    """Latency of the fastest reachable network: shortest path 0 -> L over the allowed blocks of ``latency``."""
    T = _table_array(latency, "latency")
    n = T.shape[0]
    f = np.full(n, np.inf)
    f[0] = 0.0
    for m in range(1, n):
        col = f[:m] + T[:m, m]
        col = col[np.isfinite(col)]
        if col.size:
            f[m] = col.min()
    return float(f[-1])


def _stack_latency(T: np.ndarray, spec, cuts) -> float:
    """Predicted stack latency (table units) of the cut set ``cuts``: the sum of T over its merge groups."""
    return float(sum(T[i, j] for i, j in spec.groups(cuts)))


def budgets_ms(config: CompressConfig, latency, spec) -> tuple[list[float], float, float]:
    """``(budgets in ms, base stack latency, min latency)``; raises ValueError for a budget below the minimum."""
    T = _table_array(latency, "latency")
    base = float(sum(T[p - 1, p] for p in range(1, spec.L + 1)))
    low = min_stack_latency(T)
    out = []
    for b in config.budgets:
        ms = float(b) * base if config.budget_unit == "fraction" else float(b)
        if ms < low:
            what = f"{b:g} x the base stack latency {base:.4g} ms = {ms:.4g} ms" if config.budget_unit == "fraction" \
                else f"{ms:.4g} ms"  # fmt: skip
            raise ValueError(
                f"`budgets`: {what} is below the fastest reachable network ({low:.4g} ms in table units, "
                f"{low / base:.3f} of the base stack); raise the budget to at least that"
            )
        out.append(ms)
    return out, base, low


# ---------------------------------------------------------------------------------------------------- baseline
def _mbv2_blocks(spec) -> list[tuple[int, int]]:
    ends = [0, *sorted(spec.optional)]
    return list(zip(ends[:-1], ends[1:]))


def depthshrinker_structure(spec, blocks) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(A, S) with every inverted-residual block in ``blocks`` merged into one conv and a ReLU6 at its end.

    The other blocks keep their default activations and every cut (spec §4.2, DepthShrinker's
    ``ADD_FINAL_ACT: relu6``).
    """
    A0, S0 = spec.default_structure()
    inside = {p for i, j in blocks for p in range(i + 1, j)}
    A = sorted((set(A0) - inside) | {j for _, j in blocks})
    S = sorted(set(S0) - inside)
    return spec.check_structure(A, S)


def depthshrinker_blocks(spec, latency, target: float) -> tuple[list[tuple[int, int]], float]:
    """Blocks to merge so that the predicted stack latency is at most ``target`` (the documented simple rule).

    Rule: rank the inverted-residual blocks (i, j] by their measured saving ``sum_p T[p-1, p] - T[i, j]`` (from the
    latency table; ties: earlier block first), and merge them in that order, skipping blocks whose saving is not
    positive, until the predicted stack latency is ``<= target``. Then drop again every merged block (smallest
    saving first) whose removal keeps the latency ``<= target``, so the match is as tight as the rule allows. If
    even every positive-saving block does not reach ``target``, all of them are merged (the match is reported as
    missed). Returns ``(blocks sorted by position, predicted latency)``.
    """
    T = _table_array(latency, "latency")
    blocks = _mbv2_blocks(spec)
    singles = sum(T[p - 1, p] for p in range(1, spec.L + 1))
    saving = {b: float(sum(T[p - 1, p] for p in range(b[0] + 1, b[1] + 1)) - T[b]) for b in blocks}
    order = sorted((b for b in blocks if saving[b] > 0), key=lambda b: (-saving[b], b))
    chosen, lat = [], singles
    for b in order:
        if lat <= target:
            break
        chosen.append(b)
        lat -= saving[b]
    for b in sorted(chosen, key=lambda b: (saving[b], b)):
        if lat + saving[b] <= target:
            chosen.remove(b)
            lat += saving[b]
    chosen = sorted(chosen)
    _, S = depthshrinker_structure(spec, chosen)
    return chosen, _stack_latency(T, spec, S)


# ---------------------------------------------------------------------------------------------------------- stages
class _Log:
    def __init__(self, progress: bool):
        self.progress = progress
        self.t0 = time.perf_counter()

    def __call__(self, msg: str) -> None:
        if self.progress:
            print(f"[{time.perf_counter() - self.t0:7.1f} s] {msg}", flush=True)


def _base_meta(config: CompressConfig, spec) -> dict:
    tc = dataclasses.asdict(config.train)
    tc.pop("progress", None)
    return {"network": spec.name, "model": config.model, "width": config.width, "data": config.data,
            "hw": config.hw or (32 if config.data == "mnist5k" else 8), "stem_stride": config.stem_stride,
            "settings": None if config.settings is None else [list(r) for r in config.settings],
            "vgg_depth": config.vgg_depth, "seed": config.seed, "max_train": config.max_train,
            "val_fraction": config.val_fraction, "test_fraction": config.test_fraction, "train": tc}  # fmt: skip


def _base_network(config, model, spec, x_tr, y_tr, out, log):
    from combax.models.classifier_train import fit

    meta = _base_meta(config, spec)
    ck = out / "base.msgpack" if out is not None else None
    if ck is not None and ck.is_file():
        try:
            variables, saved = load_checkpoint(ck)
        except ValueError:  # a file of an older format in the output folder: train again, overwrite it
            variables, saved = None, None
        if saved == json.loads(json.dumps(meta)):
            log(f"(b) base network loaded from {ck}")
            return variables, True
        log(f"(b) checkpoint {ck} was trained with other settings: retraining")
    cfg = dataclasses.replace(config.train, batch_size=min(config.train.batch_size, len(y_tr)),
                              progress=config.progress and config.train.progress)  # fmt: skip
    log(f"(b) training the base network: {cfg.epochs} epochs, {len(y_tr)} images")
    variables = to_numpy(fit(model, x_tr, y_tr, cfg, desc="train base"))
    if ck is not None:
        save_checkpoint(ck, variables, meta)
    return variables, False


def _latency_table(config, spec, hw, out, latency, log):
    """The latency table: given, loaded from ``out`` when its settings match, or measured."""
    from combax.adapters import tables

    if latency is not None:
        if isinstance(latency, str | Path):
            return tables.LatencyTable.load(latency), "loaded"
        return latency, "given"
    path = out / "latency_table.npz" if out is not None else None
    if path is not None and path.is_file():
        lt = tables.LatencyTable.load(path)
        same = (lt.spec_name == spec.name and lt.batch == config.table_batch and lt.hw == hw
                and lt.threads == config.threads and lt.backend == config.backend)  # fmt: skip
        if same and np.asarray(lt.latency).shape == (spec.L + 1, spec.L + 1):
            log(f"(c) latency table loaded from {path}")
            return lt, "loaded"
    log(f"(c) measuring the latency table: {len(spec.valid_blocks())} blocks, {config.backend}, batch "
        f"{config.table_batch}, {config.threads} thread(s)")  # fmt: skip
    lt = tables.latency_table(spec, hw=hw, batch=config.table_batch, backend=config.backend,
                              warmup=config.table_warmup, runs=config.table_runs, threads=config.threads,
                              progress=config.progress, seed=config.seed)  # fmt: skip
    if path is not None:
        lt.save(path)
    return lt, "measured"


def _importance_table(config, model, variables, data_, out, importance, reuse, executor, log):
    from combax.adapters import tables

    x_tr, y_tr, x_va, y_va = data_
    if importance is not None:
        if isinstance(importance, str | Path):
            return tables.ImportanceTable.load(importance), "loaded"
        return importance, "given"
    path = out / f"importance_{config.importance_method}_{config.importance_score}.npz" if out is not None else None
    if reuse and path is not None and path.is_file():
        log(f"(c) importance table loaded from {path}")
        return tables.ImportanceTable.load(path), "loaded"
    log(f"(c) measuring the importance table ({config.importance_method}, {config.importance_score}) on "
        f"{len(y_va)} val images")  # fmt: skip
    ft = dataclasses.replace(config.finetune, progress=False)
    it = tables.importance_table(model, variables, x_va, y_va, method=config.importance_method,
                                 score=config.importance_score, x_train=x_tr, y_train=y_tr, finetune=ft,
                                 executor=executor, progress=config.progress,
                                 chunk=config.importance_chunk)  # fmt: skip
    if path is not None:
        it.save(path)
    return it, "measured"


def _problem(config, lt, it, spec):
    from combax.adapters import tables
    from combax.solvers import depth

    if isinstance(lt, tables.LatencyTable) and isinstance(it, tables.ImportanceTable):
        return tables.depth_problem(lt, it, spec, alpha=config.alpha)
    T = _table_array(lt, "latency")
    h = tables.normalise_importance(_table_array(it, "importance"), config.alpha)
    valid = spec._valid_matrix()
    T = np.where(valid, T, np.nan)
    if h.ndim == 4:
        h = np.where(valid[:, :, None, None], h, np.nan)
        return depth.DepthProblem(T, h, tuple(spec.optional))
    return depth.DepthProblem(T, np.where(valid, h, np.nan), ())


class _Networks:
    """Fine-tuned, merged and exported networks, one per distinct (A, S)."""

    def __init__(self, config, spec, base_vars, data_, out, log):
        self.config, self.spec, self.base_vars, self.log = config, spec, base_vars, log
        self.x_tr, self.y_tr, self.x_va, self.y_va, self.x_te, self.y_te = data_
        self.out = out
        self.cache: dict = {}
        rng = np.random.default_rng(config.seed)
        shape = self.x_te.shape[1:]
        self.x_time = rng.random((config.timing_batch, *shape), dtype=np.float32)
        self.onnx: dict = {}

    def get(self, label: str, acts, cuts, *, finetune: bool = True, export: bool = True) -> dict:
        from combax.adapters.merge import merge
        from combax.models.chain import ChainNet
        from combax.models.classifier_train import fit

        A, S = self.spec.check_structure(acts, cuts)
        key = (A, S, finetune)
        if key in self.cache:
            return self.cache[key]
        model = ChainNet(self.spec, acts=A, cuts=S)
        logits = _batched(lambda v, xb: model.apply(v, xb, train=False))
        t = time.perf_counter()
        acc0 = _accuracy(logits(self.base_vars, self.x_te), self.y_te)
        variables = self.base_vars
        cfg = self.config.finetune
        if finetune and cfg.epochs > 0:
            self.log(f"(e) fine-tuning {label}: |A| = {len(A)}, |S| = {len(S)}, {cfg.epochs} epochs")
            cfg = dataclasses.replace(cfg, batch_size=min(cfg.batch_size, len(self.y_tr)),
                                      progress=self.config.progress and cfg.progress)  # fmt: skip
            variables = to_numpy(fit(model, self.x_tr, self.y_tr, cfg, variables=self.base_vars,
                                      desc=f"fine-tune {label}"))  # fmt: skip
        ft_s = time.perf_counter() - t
        ref = logits(variables, self.x_te)
        acc = _accuracy(ref, self.y_te)
        val = _accuracy(logits(variables, self.x_va), self.y_va)
        # (f) merge, check against the unmerged network on the test images, export
        merged = merge(model, variables, A, S)
        merged_logits = _batched(merged.apply)
        got = merged_logits(merged.params, self.x_te)
        diff = float(np.max(np.abs(ref - got)))
        rel = diff / max(1e-12, float(np.max(np.abs(ref))))
        diff64 = _float64_diff(model, variables, merged, self.x_te[:_F64_CHECK])
        entry = {
            "label": label, "acts": list(A), "cuts": list(S), "n_acts": len(A), "n_convs": merged.n_convs,
            "max_kernel": max(layer.kernel for layer in merged.layers), "accuracy_before_finetune": acc0,
            "accuracy": acc, "val_accuracy": val, "merged_accuracy": _accuracy(got, self.y_te),
            "merged_max_abs_diff": diff, "merged_max_rel_diff": rel, "max_abs_logit": float(np.max(np.abs(ref))),
            "merged_max_abs_diff_f64": diff64,
            "finetune_seconds": ft_s,
        }  # fmt: skip
        entry["onnx"], entry["onnx_max_abs_diff"] = self._export(label, merged) if export else (None, None)
        self.log(f"(f) {label}: test accuracy {100 * acc:.2f} % (before fine-tuning {100 * acc0:.2f} %), merged "
                 f"into {merged.n_convs} convs, max |merged - unmerged| = {diff:.2e}")  # fmt: skip
        self.cache[key] = entry
        return entry

    def _export(self, label, merged):
        if self.config.backend == "xla":
            self.onnx[label] = (_jit_apply(merged), merged.params)
            return None, None
        import tempfile

        from combax.adapters.export import export_onnx, onnx_forward

        folder = self.out / "onnx" if self.out is not None else Path(tempfile.mkdtemp(prefix="combax_depth_"))
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in label)
        path = export_onnx(merged.apply, merged.params, self.x_time, folder / f"{safe}.onnx")
        got = onnx_forward(path, self.x_time, threads=self.config.threads)
        ref = np.asarray(_jit_apply(merged)(merged.params, self.x_time))
        self.onnx[label] = path
        return str(path), float(np.max(np.abs(got - ref)))


def _jit_apply(merged):
    import jax

    return jax.jit(merged.apply)


_EVAL_BATCH = 256


def _batched(apply):
    """``(variables, x) -> logits`` in fixed-size zero-padded batches, so every call reuses one compiled function."""
    import jax

    fn = jax.jit(apply)

    def run(variables, x):
        x = np.asarray(x, dtype=np.float32)
        bs = _EVAL_BATCH
        out = []
        for s in range(0, x.shape[0], bs):
            xb = x[s : s + bs]
            k = bs - xb.shape[0]
            if k:
                xb = np.concatenate([xb, np.zeros((k, *xb.shape[1:]), np.float32)])
            out.append(np.asarray(fn(variables, xb))[: bs - k])
        return np.concatenate(out)

    return run


_F64_CHECK = 64


def _float64_diff(model, variables, merged, x) -> float:
    """Max abs logit difference of merged vs unmerged with both evaluated in float64 arithmetic.

    Separates the merge's exactness from float32 rounding: the merged weights are the float32 ones that are exported,
    the unmerged variables are the trained float32 ones, and every operation runs in float64 (``jax.enable_x64``).
    """
    import jax

    def f64(tree):
        return jax.tree_util.tree_map(lambda a: np.asarray(a, dtype=np.float64), tree)

    with jax.enable_x64(True):
        xd = np.asarray(x, dtype=np.float64)
        ref = np.asarray(jax.jit(lambda v, xb: model.apply(v, xb, train=False))(f64(variables), xd))
        got = np.asarray(jax.jit(merged.apply)(f64(merged.params), xd))
    return float(np.max(np.abs(ref - got)))


def _accuracy(logits, y) -> float:
    return float(np.mean(np.argmax(logits, axis=1) == np.asarray(y)))


def _time_all(config, models: dict, x, log) -> dict:
    """Median of per-round medians for every network; rounds visit the networks in a shuffled order."""
    from tqdm.auto import tqdm

    from combax.adapters.latency import measure

    labels = list(models)
    rounds = {k: [] for k in labels}
    cpu = {k: [] for k in labels}
    rng = np.random.default_rng(config.seed)
    log(f"(g) timing {len(labels)} networks end to end: {config.backend}, batch {x.shape[0]}, {config.threads} "
        f"thread(s), {config.timing_rounds} rounds x {config.timing_runs} runs")  # fmt: skip
    bar = tqdm(total=config.timing_rounds * len(labels), desc="timing", disable=not config.progress, leave=False)
    for _ in range(config.timing_rounds):
        for k in rng.permutation(len(labels)):
            label = labels[k]
            t = measure(models[label], x, backend=config.backend, warmup=config.timing_warmup,
                        runs=config.timing_runs, threads=config.threads)  # fmt: skip
            rounds[label].append(t.median_ms)
            cpu[label].append(t.cpu_median_ms)
            bar.update(1)
    bar.close()
    return {k: {"latency_ms": float(np.median(v)), "round_medians_ms": [float(r) for r in v],
                "min_round_ms": float(np.min(v)), "cpu_ms": float(np.median(cpu[k])),
                "cpu_round_medians_ms": [float(r) for r in cpu[k]]} for k, v in rounds.items()}  # fmt: skip


# ---------------------------------------------------------------------------------------------------------- pipeline
def run_compress(
    config: CompressConfig = CompressConfig(),
    *,
    model=None,
    latency=None,
    importance=None,
    variables=None,
    executor=None,
) -> CompressReport:
    r"""Train or load, measure both tables, solve every budget, fine-tune, merge, export, time, and report.

    Parameters
    ----------
    config : :class:`CompressConfig` (validated first).
    model : a :class:`~combax.models.chain.ChainNet` to compress instead of the configured one (rejected if not a
        chain CNN).
    latency : a latency table (:class:`combax.adapters.tables.LatencyTable`, its saved file, or an (L+1, L+1)
        array in ms) instead of measuring it.
    importance : an importance table (``ImportanceTable``, its file, or an (L+1, L+1, 2, 2) array of raw ``h``)
        instead of measuring it.
    variables : base-network variables instead of training / loading them.
    executor : a :class:`concurrent.futures.Executor` for the importance table (None = in this process); the
        latency table is always timed serially (parallel timing on one machine biases it).

    Returns
    -------
    CompressReport
        Also written to ``config.out`` as ``report.json``, ``report.md`` and ``report.png`` (when ``out`` is set).

    Raises
    ------
    ValueError
        Before any training: a bad option, a model that is not a chain, tables whose shape does not fit the
        network, an extra (A, S) that is not valid, or a budget below the fastest reachable network.

    Notes
    -----
    The solver maximises the surrogate :math:`\sum_k I_{ext}` subject to :math:`\sum_k T \le T_0` exactly (the
    Pareto front answers every budget at once); the predicted latency is in latency-table units (sum over the
    merged convs), the measured speed-up is end to end (stem and head included), so it is smaller than the ratio
    of stack latencies. No gradient flows through the solver: fine-tuning trains the chosen structure.
    """
    from combax.models.chain import ChainNet

    validate_config(config)
    log = _Log(config.progress)
    secs: dict = {}
    t0 = time.perf_counter()
    out = Path(config.out) if config.out is not None else None

    # (a) data, network, cheap checks
    x_tr, y_tr, x_va, y_va, x_te, y_te = load_data(config)
    n_classes = int(max(y_tr.max(), y_va.max(), y_te.max())) + 1
    if model is None:
        spec = build_spec(config, n_classes, x_tr.shape[-1])
        model = ChainNet(spec)
    else:
        check_chain(model)
        spec = model.spec
    hw = int(x_tr.shape[1])
    log(f"(a) {config.data}: {len(y_tr)} train / {len(y_va)} val / {len(y_te)} test images of {hw}x{hw}; "
        f"{spec.name}: L = {spec.L} convs, {len(spec.valid_blocks())} valid blocks")  # fmt: skip
    if config.baseline and not spec.optional:
        raise ValueError(f"`baseline` (DepthShrinker block merging) needs inverted-residual blocks; {spec.name} "
                         "has none: set baseline=False")  # fmt: skip
    if isinstance(latency, str | Path) or isinstance(importance, str | Path):
        from combax.adapters import tables

        if isinstance(latency, str | Path):
            latency = tables.LatencyTable.load(latency)
        if isinstance(importance, str | Path):
            importance = tables.ImportanceTable.load(importance)
    check_tables(spec, latency, importance)
    extra_struct = None
    if config.acts is not None:
        try:
            extra_struct = spec.check_structure(config.acts, config.cuts)
        except ValueError as exc:
            raise ValueError(f"the extra structure (`acts`, `cuts`) is not valid for {spec.name}: {exc}") from None
    secs["data"] = time.perf_counter() - t0

    # (c, first half) latency table, then the budget check, before any training
    t = time.perf_counter()
    lt, lt_how = _latency_table(config, spec, hw, out, latency, log)
    check_tables(spec, lt)
    T = np.where(spec._valid_matrix(), _table_array(lt, "latency"), np.nan)
    b_ms, base_stack, low = budgets_ms(config, T, spec)
    secs["latency table"] = time.perf_counter() - t
    log(f"(c) base stack {base_stack:.3f} ms, fastest reachable {low:.3f} ms ({low / base_stack:.3f}); budgets "
        + ", ".join(f"{b:.3f}" for b in b_ms) + " ms")  # fmt: skip

    # (b) base network
    t = time.perf_counter()
    loaded = variables is not None
    if variables is None:
        variables, loaded = _base_network(config, model, spec, x_tr, y_tr, out, log)
    else:
        variables = to_numpy(variables)
    secs["base (loaded)" if loaded else "base training"] = time.perf_counter() - t

    # (c, second half) importance table
    t = time.perf_counter()
    it, it_how = _importance_table(config, model, variables, (x_tr, y_tr, x_va, y_va), out, importance, loaded,
                                   executor, log)  # fmt: skip
    check_tables(spec, None, it)
    secs["importance table"] = time.perf_counter() - t

    # (d) problem, front, solutions
    from combax.solvers import depth

    t = time.perf_counter()
    prob = _problem(config, lt, it, spec)
    if prob.min_latency > min(b_ms) + 1e-12:
        raise ValueError(
            f"`budgets`: {min(b_ms):.4g} ms is below the fastest network the importance table allows "
            f"({prob.min_latency:.4g} ms); raise the budget"
        )
    front = depth.pareto_front(prob)
    sols = []
    for b in b_ms:
        r = front.best_index(b)
        if r < 0:
            raise ValueError(f"`budgets`: no solution within {b:.4g} ms (minimum {prob.min_latency:.4g} ms)")
        p = front[r]
        A, S = spec.check_structure([a for a in p.activations if a in spec.allowed_acts], p.cuts)
        sols.append((b, A, S, float(p.latency), float(p.objective)))
    secs["solve"] = time.perf_counter() - t
    log(f"(d) Pareto front: {len(front)} points in {secs['solve']:.2f} s")

    nets = _Networks(config, spec, variables, (x_tr, y_tr, x_va, y_va, x_te, y_te), out, log)
    # base network, merged with its own structure (BN folded), exported the same way
    t = time.perf_counter()
    A0, S0 = spec.default_structure()
    base = nets.get("base", A0, S0, finetune=False)
    base = {**base, "stack_latency_ms": base_stack, "predicted_latency_ms": _stack_latency(T, spec, S0)}

    if config.control and config.finetune.epochs > 0:
        ctrl = nets.get("base-finetuned", A0, S0, export=False)
        base.update(finetuned_accuracy=ctrl["accuracy"], finetuned_val_accuracy=ctrl["val_accuracy"])
    runs = []
    for k, (b, A, S, lat, obj) in enumerate(sols):
        frac = b / base_stack
        dp = dict(nets.get(f"dp-{frac:.3f}", A, S))
        dp.update(predicted_latency_ms=lat, objective=obj, table_latency_check=_stack_latency(T, spec, S))
        run = {"budget": config.budgets[k] if config.budget_unit == "fraction" else frac, "budget_ms": b, "dp": dp,
               "baseline": None}  # fmt: skip
        if config.baseline:
            blocks, pred = depthshrinker_blocks(spec, T, lat)
            bA, bS = depthshrinker_structure(spec, blocks)
            bl = dict(nets.get(f"ds-{frac:.3f}", bA, bS))
            bl.update(blocks=[list(x) for x in blocks], predicted_latency_ms=pred, matched=bool(pred <= lat + 1e-9),
                      objective=_structure_objective(prob, spec, bA, bS))  # fmt: skip
            run["baseline"] = bl
        runs.append(run)
    extra = None
    if extra_struct is not None:
        extra = dict(nets.get("extra", *extra_struct))
        extra.update(predicted_latency_ms=_stack_latency(T, spec, extra_struct[1]))
    secs["fine-tune, merge, export"] = time.perf_counter() - t

    # (g) timing, all networks in one process, interleaved
    t = time.perf_counter()
    timed = _time_all(config, nets.onnx, nets.x_time, log)
    secs["timing"] = time.perf_counter() - t
    base.update(timed["base"])
    for run in runs:
        for key in ("dp", "baseline"):
            net = run[key]
            if net is None:
                continue
            net.update(timed[net["label"]])
            net["speedup"] = base["latency_ms"] / net["latency_ms"]
            net["speedup_cpu"] = base["cpu_ms"] / net["cpu_ms"]
            net["drop_points"] = 100.0 * (base["accuracy"] - net["accuracy"])
            if "finetuned_accuracy" in base:
                net["drop_points_vs_finetuned_base"] = 100.0 * (base["finetuned_accuracy"] - net["accuracy"])
    if extra is not None:
        extra.update(timed["extra"])
        extra["speedup"] = base["latency_ms"] / extra["latency_ms"]
        extra["speedup_cpu"] = base["cpu_ms"] / extra["cpu_ms"]
        extra["drop_points"] = 100.0 * (base["accuracy"] - extra["accuracy"])
    secs["total"] = time.perf_counter() - t0

    tables_info = {
        "latency": {"source": lt_how, "entries": int(np.isfinite(T).sum()), "backend": getattr(lt, "backend", None),
                    "batch": getattr(lt, "batch", None), "threads": getattr(lt, "threads", None),
                    "hw": getattr(lt, "hw", None), "seconds": secs["latency table"]},
        "importance": {"source": it_how, "method": config.importance_method, "score": config.importance_score,
                       "entries": int(np.isfinite(_table_array(it, "importance")).sum()),
                       "base_score": getattr(it, "base_score", None), "alpha": config.alpha,
                       "seconds": secs["importance table"]},
    }  # fmt: skip
    network = {"name": spec.name, "L": spec.L, "valid_blocks": len(spec.valid_blocks()),
               "input_shape": list(x_tr.shape[1:]), "n_train": len(y_tr), "n_val": len(y_va), "n_test": len(y_te),
               "params": int(sum(np.asarray(a).size for a in _leaves(variables["params"])))}  # fmt: skip
    report = CompressReport(config, network, base, tables_info, [[float(a), float(b)] for a, b in
                            zip(front.latency, front.objective)], float(low), runs, extra, secs)  # fmt: skip
    if out is not None:
        write_report(report, out / "report")
        log(f"(i) report written to {out / 'report.json'} (.md, .png)")
    return report


def _leaves(tree):
    if isinstance(tree, dict):
        for v in tree.values():
            yield from _leaves(v)
    else:
        yield tree


def _structure_objective(prob, spec, A, S) -> float | None:
    """Surrogate objective of a structure (None when one of its segments is not tabulated)."""
    from combax.solvers import depth

    L = spec.L
    bnd = sorted(set(A) | {b for b in S if b in set(spec.optional)} | {L})
    if prob.flagged:
        flags = [1 if b in set(A) else 0 for b in bnd]
    else:
        bnd, flags = sorted(set(A) | {L}), None
    try:
        obj, _ = depth.evaluate(prob, bnd, flags)
    except (ValueError, IndexError):
        return None
    return obj if math.isfinite(obj) else None


# ---------------------------------------------------------------------------------------------------------- output
def write_report(report: CompressReport, stem) -> None:
    """Write ``stem.json``, ``stem.md`` and ``stem.png``."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    d = report.to_dict()
    stem.with_suffix(".json").write_text(json.dumps(d, indent=2))
    stem.with_suffix(".md").write_text(markdown(d))
    plot_report(d, stem.with_suffix(".png"))


def _pair(n: dict, a: str, b: str, fmt: str) -> str:
    return " / ".join("-" if n.get(k) is None else fmt.format(n[k]) for k in (a, b))


def _pct(x):
    return "-" if x is None else f"{100 * x:.2f}"


def markdown(d: dict, title: str | None = None) -> str:
    """The report as Markdown: base network, one row per budget (DP and baseline), timing setting."""
    c, b, net = d["config"], d["base"], d["network"]
    lines = [
        f"# {title or 'combax depth compress'}: {net['name']} on {c['data']}",
        "",
        f"{net['name']} (L = {net['L']} convs, {net['valid_blocks']} valid blocks) on {c['data']} "
        f"{net['input_shape'][0]}x{net['input_shape'][1]}: {net['n_train']} train / {net['n_val']} val / "
        f"{net['n_test']} test images. Base: {c['train']['epochs']} epochs; every compressed network (DP and "
        f"baseline alike): {c['finetune']['epochs']} fine-tuning epochs, lr {c['finetune']['lr']}. Importance: "
        f"{c['importance_method']} / {c['importance_score']} on val, alpha {c['alpha']}. Latency: {c['backend']}, "
        f"{c['threads']} thread(s); table batch {c['table_batch']}, end-to-end batch {c['timing_batch']}, median of "
        f"{c['timing_rounds']} interleaved rounds x {c['timing_runs']} runs.",
        "",
        f"Base network: test accuracy **{_pct(b['accuracy'])} %**, {b['n_convs']} convs after BN folding, measured "
        f"**{b['latency_ms']:.3f} ms** per batch (process CPU {b.get('cpu_ms') or float('nan'):.3f} ms); max abs "
        f"merged - unmerged {b['merged_max_abs_diff']:.1e} in float32 (largest logit {b['max_abs_logit']:.1f}), "
        f"{b['merged_max_abs_diff_f64']:.1e} in float64; stack latency {b['stack_latency_ms']:.3f} ms in table units; "
        f"fastest reachable stack {d['min_latency']:.3f} ms. Pareto front: {len(d['front'])} points."
        + (
            f" Control: the uncompressed base fine-tuned with the same steps reaches {_pct(b['finetuned_accuracy'])} %."
            if b.get("finetuned_accuracy") is not None
            else ""
        ),
        "",
        "| budget (x base stack) | method | predicted stack ms | convs | test acc % (before FT) | drop (points) | "
        "measured ms wall / CPU | speed-up wall / CPU | max abs merged - unmerged f32 / f64 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in d["runs"]:
        for key, name in (("dp", "DP (ours)"), ("baseline", "DepthShrinker-style")):
            n = r[key]
            if n is None:
                continue
            tag = "" if key == "dp" else (" (matched)" if n.get("matched") else " (not matched)")
            lines.append(
                f"| {r['budget']:.3g} ({r['budget_ms']:.3f} ms) | {name}{tag} | {n['predicted_latency_ms']:.3f} | "
                f"{n['n_convs']} | {_pct(n['accuracy'])} ({_pct(n['accuracy_before_finetune'])}) | "
                f"{n['drop_points']:+.2f} | {_pair(n, 'latency_ms', 'cpu_ms', '{:.3f}')} | "
                f"{_pair(n, 'speedup', 'speedup_cpu', '{:.2f}x')} | "
                f"{_pair(n, 'merged_max_abs_diff', 'merged_max_abs_diff_f64', '{:.1e}')} |"
            )
    if d.get("extra"):
        n = d["extra"]
        lines.append(
            f"| given (A, S) | extra | {n['predicted_latency_ms']:.3f} | {n['n_convs']} | {_pct(n['accuracy'])} "
            f"({_pct(n['accuracy_before_finetune'])}) | {n['drop_points']:+.2f} | "
            f"{_pair(n, 'latency_ms', 'cpu_ms', '{:.3f}')} | {_pair(n, 'speedup', 'speedup_cpu', '{:.2f}x')} | "
            f"{_pair(n, 'merged_max_abs_diff', 'merged_max_abs_diff_f64', '{:.1e}')} |"
        )
    lines += ["", "Structures:", ""]
    for r in d["runs"]:
        lines.append(f"- budget {r['budget']:.3g}: DP A = {r['dp']['acts']}, S = {r['dp']['cuts']}")
        if r["baseline"] is not None:
            lines.append(f"  baseline blocks {r['baseline']['blocks']}")
    lines += ["", "Wall time per stage (s): " + ", ".join(f"{k} {v:.0f}" for k, v in d["seconds"].items()), ""]
    return "\n".join(lines)


def plot_report(d: dict, path) -> None:
    """Test accuracy against measured end-to-end speed-up: base, DP choices, DepthShrinker-style baseline."""
    from matplotlib.figure import Figure  # no pyplot: leaves the caller's backend alone

    fig = Figure(figsize=(6.5, 4.2))
    ax = fig.subplots()
    base = d["base"]
    ax.plot([1.0], [100 * base["accuracy"]], "k*", ms=12, label="base network")
    for key, marker, name in (("dp", "o-", "DP (ours)"), ("baseline", "s--", "DepthShrinker-style blocks")):
        pts = [(r[key]["speedup"], 100 * r[key]["accuracy"], r["budget"]) for r in d["runs"] if r[key] is not None]
        if not pts:
            continue
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker, ms=7, mfc="none", label=name)
        for s, a, bud in pts:
            ax.annotate(f"{bud:.2g}", (s, a), textcoords="offset points", xytext=(4, 4), fontsize=7)
    if d.get("extra"):
        ax.plot([d["extra"]["speedup"]], [100 * d["extra"]["accuracy"]], "D", ms=7, label="given (A, S)")
    c = d["config"]
    ax.set_xlabel(f"measured speed-up ({c['backend']}, batch {c['timing_batch']}, {c['threads']} thread(s))")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{d['network']['name']} on {c['data']}: accuracy vs speed-up (labels: budget)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
