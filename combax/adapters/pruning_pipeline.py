r"""Channel pruning end to end: train (or load) a CIFAR ResNet, select channels exactly, prune, fine-tune, time it.

:func:`run_prune` is what ``combax channels prune`` runs:

1. the data set (``mnist5k`` padded to 32x32, or ``digits`` 8x8), split 80/20 stratified (:func:`load_data`);
2. the base network, trained with :func:`combax.models.classifier_train.fit` or loaded from a checkpoint;
3. the channel problem (:func:`combax.adapters.pruning.channel_problem`: L1 importance, FLOPs / parameters / fitted
   latency budget ``ratio`` x the full network's), solved by branch-and-bound with a time limit;
4. physical pruning (:func:`~combax.adapters.pruning.prune`), with the resource recomputed from the new kernel
   shapes checked against the solver's;
5. fine-tuning with a progress bar, test accuracy before and after;
6. optionally the greedy L1-filter baseline at the same budget (pruned, fine-tuned the same way);
7. onnxruntime latency of the base and pruned networks, and a JSON report.

Reference: Y. Jeong, D. Lee, G. An, C. Son, H. O. Song, "Optimal channel selection with discrete QCQP",
AISTATS 2022, arXiv 2202.12417.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from combax.adapters._json import json_ready
from combax.adapters.checkpoint import load_checkpoint, save_checkpoint

__all__ = [
    "MODELS",
    "DATASETS",
    "PruneConfig",
    "PruneReport",
    "validate_config",
    "load_data",
    "build_model",
    "save_checkpoint",
    "load_checkpoint",
    "run_prune",
]

MODELS = ("resnet8", "resnet14", "resnet20", "resnet32", "resnet56")
DATASETS = ("mnist5k", "digits")
_RESOURCES = ("flops", "params", "latency")
_NORMALISATIONS = ("frobenius", "sum")


@dataclass(frozen=True, slots=True)
class PruneConfig:
    """Settings of :func:`run_prune` (the ``combax channels prune`` options).

    Attributes
    ----------
    model : ``"resnet8"`` ... ``"resnet56"`` (CIFAR ResNet-(6n+2), zero-padding shortcuts).
    data : ``"mnist5k"`` (padded to 32x32) or ``"digits"`` (8x8).
    resource : ``"flops"``, ``"params"`` or ``"latency"`` (fitted onnxruntime model; pruned in tile units).
    ratio : fraction of the resource that remains, in (0, 1].
    normalisation : per-layer scaling of the L1 importance: ``"frobenius"`` (the paper's: unit Frobenius norm per
        layer) or ``"sum"`` (unit total per layer; every layer weighs the same). See
        :func:`combax.adapters.pruning.importance`.
    width : base width (stage widths ``width * (1, 2, 4)``; 16 in the paper).
    epochs, lr : base training (ignored when the checkpoint exists).
    finetune_epochs, finetune_lr : fine-tuning of the pruned network(s).
    batch_size : training minibatch.
    seed : split, initialisation and shuffling seed.
    time_limit : branch-and-bound seconds (None: to proven optimality).
    rel_gap : stop B&B at this relative gap.
    baseline : also run the greedy L1-filter baseline at the same budget.
    checkpoint : file of the base network (:mod:`combax.adapters.checkpoint`, msgpack): loaded if it exists, written after training otherwise.
    latency_batch, latency_threads, latency_runs : onnxruntime timing setting (batch size, intra-op threads, runs).
    tile : channel group of the latency-constrained problem (and the latency model's grid unit).
    progress : progress bars.
    """

    model: str = "resnet20"
    data: str = "mnist5k"
    resource: str = "flops"
    ratio: float = 0.5
    normalisation: str = "frobenius"
    width: int = 16
    epochs: int = 3
    lr: float = 0.1
    finetune_epochs: int = 2
    finetune_lr: float = 0.02
    batch_size: int = 128
    seed: int = 0
    time_limit: float | None = 30.0
    rel_gap: float = 0.0
    baseline: bool = False
    checkpoint: str | None = None
    latency_batch: int = 8
    latency_threads: int | None = 1
    latency_runs: int = 30
    tile: int = 8
    progress: bool = True


@dataclass(frozen=True, slots=True)
class PruneReport:
    """What :func:`run_prune` found (all plain Python values; :meth:`to_dict` is the JSON report).

    Attributes
    ----------
    config : the :class:`PruneConfig`.
    base_accuracy : test accuracy of the base network (fraction).
    pruned_accuracy_before, pruned_accuracy : of the pruned network before and after fine-tuning.
    solver : the B&B result summary (status, objective, bound, gap, seconds, nodes, resource, budget).
    budget, full_resource : the constraint B and the prunable convs' full resource (same unit).
    resource_from_shapes : resource of the pruned network recomputed from its kernel shapes (FLOPs / params), or
        the latency model's prediction for its widths.
    meets_budget : ``resource_from_shapes == solver resource <= budget`` (exact for FLOPs and params).
    kept_per_map : kept channels of maps 0..M.
    base_latency_ms, pruned_latency_ms, speedup : onnxruntime medians and their ratio.
    predicted_latency_ms : (resource="latency") the model's prediction for the pruned network, ``fixed`` included.
    greedy : (baseline) the greedy L1 baseline's dict: ratio, resource, accuracies, latency; else None.
    latency_model : (resource="latency") fit summary; else None.
    seconds : wall time per stage.
    """

    config: PruneConfig
    base_accuracy: float
    pruned_accuracy_before: float
    pruned_accuracy: float
    solver: dict
    budget: float
    full_resource: float
    resource_from_shapes: float
    meets_budget: bool
    kept_per_map: tuple
    base_latency_ms: float
    pruned_latency_ms: float
    speedup: float
    predicted_latency_ms: float | None
    greedy: dict | None
    latency_model: dict | None
    seconds: dict

    def to_dict(self) -> dict:
        """A JSON-ready dict (NaN and inf become None)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["config"] = dataclasses.asdict(self.config)
        out["kept_per_map"] = list(self.kept_per_map)
        return json_ready(out)


# ---------------------------------------------------------------------------------------------------------- pieces
def validate_config(config: PruneConfig) -> PruneConfig:
    """Check every option before any long work; raises ValueError naming the option and the fix."""
    if config.model not in MODELS:
        raise ValueError(f"`model` must be one of {MODELS}; got {config.model!r}")
    if config.data not in DATASETS:
        raise ValueError(f"`data` must be one of {DATASETS}; got {config.data!r}")
    if config.resource not in _RESOURCES:
        raise ValueError(f"`resource` must be one of {_RESOURCES}; got {config.resource!r}")
    if not (isinstance(config.ratio, int | float) and 0.0 < float(config.ratio) <= 1.0):
        raise ValueError(f"`ratio` must lie in (0, 1] (the fraction of the resource that remains); got {config.ratio}")
    if config.normalisation not in _NORMALISATIONS:
        raise ValueError(f"`normalisation` must be one of {_NORMALISATIONS}; got {config.normalisation!r}")
    if config.width < 1:
        raise ValueError(f"`width` must be >= 1; got {config.width}")
    if config.epochs < 0 or config.finetune_epochs < 0:
        raise ValueError(f"`epochs` and `finetune_epochs` must be >= 0; got {config.epochs}, {config.finetune_epochs}")
    if config.batch_size < 1:
        raise ValueError(f"`batch_size` must be >= 1; got {config.batch_size}")
    if config.time_limit is not None and not config.time_limit > 0:
        raise ValueError(f"`time_limit` must be > 0 seconds or None; got {config.time_limit}")
    if not 0.0 <= config.rel_gap < 1.0:
        raise ValueError(f"`rel_gap` must lie in [0, 1); got {config.rel_gap}")
    if config.baseline and config.resource == "latency":
        raise ValueError("`baseline` (greedy L1) supports resource 'flops' or 'params' only; drop it for 'latency'")
    if config.resource == "latency" and (config.tile < 1 or config.width % config.tile):
        raise ValueError(f"`tile` must divide the base width {config.width} for resource 'latency'; got {config.tile}")
    if config.checkpoint is not None and Path(config.checkpoint).is_dir():
        raise ValueError(f"`checkpoint` must be a file path (e.g. base.msgpack); got the folder {config.checkpoint!r}")
    return config


def load_data(name: str, seed: int = 0):
    """``(x_train, y_train, x_test, y_test)``: a stratified 80/20 split; MNIST-5k zero-padded to 32x32."""
    from combax import data

    if name not in DATASETS:
        raise ValueError(f"`data` must be one of {DATASETS}; got {name!r}")
    ds = data.pad_to(data.mnist5k(), 32) if name == "mnist5k" else data.digits()
    tr, te = data.stratified_split(ds.labels, 0.2, seed=seed)
    return ds.images[tr], ds.labels[tr], ds.images[te], ds.labels[te]


def build_model(name: str, width: int = 16, num_classes: int = 10):
    """The full CIFAR ResNet named ``resnet<depth>``."""
    from combax.models.resnet import resnet_cifar

    if name not in MODELS:
        raise ValueError(f"`model` must be one of {MODELS}; got {name!r}")
    return resnet_cifar(int(name[6:]), base_width=int(width), num_classes=int(num_classes))


def _onnx_latency(model, variables, shape, config):
    from combax.adapters.latency_model import network_latency

    t = network_latency(model, variables, shape, batch_size=config.latency_batch, threads=config.latency_threads,
                        runs=config.latency_runs)  # fmt: skip
    return t.median_ms


def _base_network(config, model, x_tr, y_tr, shape):
    from combax.models.classifier_train import TrainConfig, fit

    meta = {"model": config.model, "width": config.width, "data": config.data, "seed": config.seed,
            "epochs": config.epochs, "lr": config.lr}  # fmt: skip
    ck = Path(config.checkpoint) if config.checkpoint else None
    if ck is not None and ck.is_file():
        variables, saved = load_checkpoint(ck)
        for key in ("model", "width", "data"):
            if saved.get(key) != meta[key]:
                raise ValueError(f"checkpoint {str(ck)!r} holds {key}={saved.get(key)!r}, not {meta[key]!r}")
        return variables, True
    cfg = TrainConfig(epochs=config.epochs, batch_size=min(config.batch_size, len(y_tr)), lr=config.lr,
                      seed=config.seed, progress=config.progress)  # fmt: skip
    variables = fit(model, x_tr, y_tr, cfg, desc="train base")
    variables = {k: {n: {p: np.asarray(a) for p, a in d.items()} for n, d in v.items()} for k, v in variables.items()}
    if ck is not None:
        save_checkpoint(ck, variables, meta)
    return variables, False


def _finetune(pruned, x_tr, y_tr, config, desc):
    from combax.adapters.pruning import finetune
    from combax.models.classifier_train import TrainConfig

    if config.finetune_epochs == 0:
        return pruned
    cfg = TrainConfig(epochs=config.finetune_epochs, batch_size=min(config.batch_size, len(y_tr)),
                      lr=config.finetune_lr, warmup_steps=0, seed=config.seed, progress=config.progress)  # fmt: skip
    return finetune(pruned, x_tr, y_tr, cfg, desc=desc)


def _solver_dict(sol) -> dict:
    return {
        "method": sol.method, "status": str(sol.status), "objective": float(sol.objective),
        "bound": float(sol.bound), "gap": float(sol.gap), "seconds": float(sol.seconds), "n_nodes": int(sol.n_nodes),
        "resource": float(sol.resource), "budget": float(sol.budget), "message": sol.message,
    }  # fmt: skip


# ---------------------------------------------------------------------------------------------------------- pipeline
def run_prune(config: PruneConfig = PruneConfig(), *, out_dir=None, latency_model=None) -> PruneReport:
    r"""Train or load, select channels by branch-and-bound, prune physically, fine-tune, evaluate and time.

    Parameters
    ----------
    config : :class:`PruneConfig` (validated first: bad options fail before any training).
    out_dir : if given, ``report.json`` and the pruned network's weights (``pruned.msgpack``) are written there.
    latency_model : a fitted :class:`~combax.adapters.latency_model.LatencyModel` for ``resource="latency"``
        (fitted here when None).

    Returns
    -------
    PruneReport.

    Notes
    -----
    The budget is :math:`B = \rho (R_{full} + R_{fixed}) - R_{fixed}` with the classifier (or the latency model's
    fixed time) outside the optimisation, as in the original. The greedy baseline uses exact bookkeeping, so both
    selections satisfy the same budget. Accuracies are on the held-out 20 %. No gradient flows through the solver.
    """
    from combax.adapters import pruning as P
    from combax.models.classifier_train import evaluate
    from combax.solvers import channels

    validate_config(config)
    secs = {}
    t0 = time.perf_counter()
    x_tr, y_tr, x_te, y_te = load_data(config.data, config.seed)
    shape = tuple(x_tr.shape[1:])
    model = build_model(config.model, config.width, int(max(y_tr.max(), y_te.max())) + 1)
    variables, loaded = _base_network(config, model, x_tr, y_tr, shape)
    base_acc = evaluate(model, variables, x_te, y_te)
    secs["base (loaded)" if loaded else "base training"] = time.perf_counter() - t0

    lm_info = None
    group = None
    if config.resource == "latency":
        from combax.adapters.latency_model import fit_latency_model

        t = time.perf_counter()
        if latency_model is None:
            latency_model = fit_latency_model(model, shape, tile=config.tile, batch_size=config.latency_batch,
                                              threads=config.latency_threads, progress=config.progress)  # fmt: skip
        lm_info = {"fixed_ms": latency_model.fixed, "layer_mpe_mean": float(np.mean(latency_model.layer_mpe)),
                   "batch_size": latency_model.batch_size, "threads": latency_model.threads,
                   "fit_seconds": latency_model.seconds}  # fmt: skip
        group = config.tile
        secs["latency model"] = time.perf_counter() - t
    t = time.perf_counter()
    prob = P.channel_problem(model, variables, config.resource, config.ratio, input_shape=shape,
                             latency_model=latency_model, group_size=group,
                             normalisation=config.normalisation)  # fmt: skip
    sol = channels.solve(prob, "bnb", time_limit=config.time_limit, rel_gap=config.rel_gap)
    secs["solve"] = time.perf_counter() - t
    if sol.keep is None:
        raise ValueError(f"the channel problem has no solution at ratio {config.ratio}: {sol.message}")
    pruned = P.prune(model, variables, sol, input_shape=shape)
    if config.resource == "latency":
        from_shapes = P.resource_from_shapes(pruned.model, pruned.variables, "latency", input_shape=shape,
                                             latency_model=latency_model)  # fmt: skip
        meets = bool(np.isclose(from_shapes, sol.resource, rtol=1e-9) and sol.resource <= prob.budget + 1e-9)
    else:
        from_shapes = pruned.resource[config.resource]
        meets = bool(from_shapes == sol.resource and from_shapes <= prob.budget)
    acc_before = evaluate(pruned.model, pruned.variables, x_te, y_te)
    t = time.perf_counter()
    tuned = _finetune(pruned, x_tr, y_tr, config, "fine-tune (B&B)")
    acc = evaluate(tuned.model, tuned.variables, x_te, y_te)
    secs["fine-tune"] = time.perf_counter() - t

    greedy = None
    if config.baseline:
        t = time.perf_counter()
        g = P.greedy_l1(model, variables, config.ratio, config.resource, bookkeeping="exact", input_shape=shape)
        gp = P.prune(model, variables, g, input_shape=shape)
        g_before = evaluate(gp.model, gp.variables, x_te, y_te)
        gt = _finetune(gp, x_tr, y_tr, config, "fine-tune (greedy)")
        greedy = {"ratio": g.ratio, "resource": g.resource, "estimated_naive": g.estimated,
                  "resource_from_shapes": gp.resource[config.resource], "objective": g.objective,
                  "accuracy_before": g_before, "accuracy": evaluate(gt.model, gt.variables, x_te, y_te),
                  "kept_per_map": [int(k.sum()) for k in g.keep]}  # fmt: skip
        secs["greedy baseline"] = time.perf_counter() - t

    t = time.perf_counter()
    base_ms = _onnx_latency(model, variables, shape, config)
    pruned_ms = _onnx_latency(tuned.model, tuned.variables, shape, config)
    if greedy is not None:
        greedy["latency_ms"] = _onnx_latency(gt.model, gt.variables, shape, config)
        greedy["speedup"] = base_ms / greedy["latency_ms"]
    secs["latency"] = time.perf_counter() - t
    predicted = None
    if latency_model is not None:
        predicted = latency_model.predict(tuned.model, shape)
    secs["total"] = time.perf_counter() - t0
    report = PruneReport(
        config, base_acc, acc_before, acc, _solver_dict(sol), float(prob.budget), float(prob.full_resource),
        float(from_shapes), meets, tuple(int(k.sum()) for k in sol.keep), base_ms, pruned_ms, base_ms / pruned_ms,
        predicted, greedy, lm_info, secs,
    )  # fmt: skip
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(json.dumps(report.to_dict(), indent=2))
        save_checkpoint(out / "pruned.msgpack", tuned.variables, {"model": config.model, "pruned": True,
                        "kept_per_map": list(report.kept_per_map)})  # fmt: skip
    return report
