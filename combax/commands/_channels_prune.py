"""``combax channels prune``: train (or load) a CIFAR ResNet, select channels exactly, prune, fine-tune, time it.

Wired into ``combax channels`` by :mod:`combax.commands.channels` through :func:`add_prune_parser`. The pipeline is
:func:`combax.adapters.pruning_pipeline.run_prune`; this module only parses options, checks them before any long
work, and prints the report.

Examples
--------
``combax channels prune --model resnet20 --data mnist5k --resource flops --ratio 0.5``
``combax channels prune --model resnet20 --data mnist5k --ratio 0.5 --epochs 3 --finetune-epochs 2 --baseline``
``combax channels prune --model resnet8 --data digits --resource latency --ratio 0.8 --width 8 --out prune_out``
"""

from __future__ import annotations

import argparse
import json
import sys

from combax.adapters.pruning_pipeline import DATASETS, MODELS
from combax.commands._argtypes import non_negative_int, positive

RESOURCES = ("flops", "params", "latency")


def _ratio(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1]; got {text!r}") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must lie in (0, 1] (the fraction of the resource that remains); got {text}")
    return value


def add_prune_parser(channels_subparsers) -> argparse.ArgumentParser:
    """Add the ``prune`` sub-subcommand to the ``combax channels`` sub-subparsers; returns its parser."""
    p = channels_subparsers.add_parser(
        "prune",
        help="end to end: train or load a ResNet, B&B channel selection, physical pruning, fine-tuning, latency",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", choices=MODELS, default="resnet20", help="CIFAR ResNet (default: resnet20)")
    p.add_argument("--data", choices=DATASETS, default="mnist5k", help="mnist5k (padded to 32x32) or digits (8x8)")
    p.add_argument("--resource", choices=RESOURCES, default="flops", help="what the budget limits (default: flops)")
    p.add_argument("--ratio", type=_ratio, default=0.5, help="fraction of the resource that remains (default 0.5)")
    p.add_argument("--normalisation", choices=("frobenius", "sum"), default="frobenius",
                   help="per-layer scaling of the L1 importance: frobenius (the paper's) or sum")  # fmt: skip
    p.add_argument("--width", type=positive(int), default=16, help="base width (stage widths x1, x2, x4; 16)")
    p.add_argument("--epochs", type=non_negative_int, default=3, help="base training epochs (default 3)")
    p.add_argument("--lr", type=positive(float), default=0.1, help="base training peak learning rate (0.1)")
    p.add_argument("--finetune-epochs", type=non_negative_int, default=2, help="fine-tuning epochs (default 2)")
    p.add_argument("--finetune-lr", type=positive(float), default=0.02, help="fine-tuning learning rate (0.02)")
    p.add_argument("--batch-size", type=positive(int), default=128, help="training minibatch (default 128)")
    p.add_argument("--seed", type=int, default=0, help="split, initialisation and shuffling seed (default 0)")
    p.add_argument("--time-limit", type=positive(float), default=30.0, help="B&B seconds (default 30)")
    p.add_argument("--rel-gap", type=float, default=0.0, help="stop B&B at this relative gap (default 0)")
    p.add_argument("--baseline", action="store_true", help="also run the greedy L1-filter baseline (flops/params)")
    p.add_argument(
        "--checkpoint", default=None, help="base network checkpoint (.msgpack): loaded if it exists, else written"
    )
    p.add_argument("--tile", type=positive(int), default=8, help="channel group for --resource latency (8)")
    p.add_argument("--latency-batch", type=positive(int), default=8, help="onnxruntime timing batch (default 8)")
    p.add_argument("--threads", type=positive(int), default=1, help="onnxruntime intra-op threads (default 1)")
    p.add_argument("--out", default="prune_out", help="folder for report.json and pruned.msgpack (default prune_out)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.set_defaults(func=cmd_prune)
    return p


def config_from_args(args):
    """The validated :class:`~combax.adapters.pruning_pipeline.PruneConfig` of parsed options (ValueError if bad)."""
    from combax.adapters.pruning_pipeline import PruneConfig, validate_config

    cfg = PruneConfig(
        model=args.model, data=args.data, resource=args.resource, ratio=args.ratio, normalisation=args.normalisation,
        width=args.width,
        epochs=args.epochs, lr=args.lr, finetune_epochs=args.finetune_epochs, finetune_lr=args.finetune_lr,
        batch_size=args.batch_size, seed=args.seed, time_limit=args.time_limit, rel_gap=args.rel_gap,
        baseline=args.baseline, checkpoint=args.checkpoint, latency_batch=args.latency_batch,
        latency_threads=args.threads, tile=args.tile, progress=not args.no_progress,
    )  # fmt: skip
    return validate_config(cfg)


def _print_report(rep) -> None:
    s = rep.solver
    unit = {"flops": "MACs", "params": "parameters", "latency": "ms (predicted, convs)"}[rep.config.resource]
    print(f"base       {rep.config.model} on {rep.config.data}: test accuracy {100 * rep.base_accuracy:.2f} %")
    print(f"solver     {s['method']} {s['status']}: objective {s['objective']:.6g}, bound {s['bound']:.6g}, "
          f"gap {100 * s['gap']:.2f} %, {s['seconds']:.1f} s, {s['n_nodes']} nodes")  # fmt: skip
    print(f"resource   {rep.resource_from_shapes:.6g} {unit} from the pruned shapes = solver {s['resource']:.6g} "
          f"<= budget {rep.budget:.6g}: {rep.meets_budget} ({rep.resource_from_shapes / rep.full_resource:.1%} "
          "of the full network)")  # fmt: skip
    print(f"kept/map   {list(rep.kept_per_map)}")
    print(f"accuracy   {100 * rep.pruned_accuracy_before:.2f} % after pruning, {100 * rep.pruned_accuracy:.2f} % "
          "after fine-tuning")  # fmt: skip
    print(f"latency    base {rep.base_latency_ms:.3f} ms, pruned {rep.pruned_latency_ms:.3f} ms (onnxruntime, batch "
          f"{rep.config.latency_batch}): speed-up {rep.speedup:.2f}x")  # fmt: skip
    if rep.predicted_latency_ms is not None:
        print(f"predicted  {rep.predicted_latency_ms:.3f} ms by the fitted latency model")
    if rep.greedy is not None:
        g = rep.greedy
        print(f"greedy L1  resource {g['resource_from_shapes']:.6g}, accuracy {100 * g['accuracy']:.2f} % "
              f"({100 * g['accuracy_before']:.2f} % before fine-tuning), speed-up {g['speedup']:.2f}x")  # fmt: skip


def cmd_prune(args) -> int:
    """Run ``combax channels prune``; returns the exit status (2 for bad options)."""
    from pathlib import Path

    try:
        cfg = config_from_args(args)
    except ValueError as exc:
        print(f"combax channels prune: error: {exc}", file=sys.stderr)
        return 2
    from combax.adapters.pruning_pipeline import run_prune

    try:
        rep = run_prune(cfg, out_dir=args.out)
    except (ValueError, ImportError, OSError) as exc:
        print(f"combax channels prune: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(rep.to_dict(), indent=2))
    else:
        _print_report(rep)
        print(f"report     {Path(args.out) / 'report.json'}")
    return 0
