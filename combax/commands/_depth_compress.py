"""``combax depth compress``: train (or load) a chain CNN, measure the tables, solve, fine-tune, merge, time it.

Wired into ``combax depth`` by :mod:`combax.commands.depth` through :func:`add_compress_parser`. The pipeline is
:func:`combax.adapters.depth_pipeline.run_compress`; this module only parses options, checks them before any long
work, and prints the report.

Examples
--------
``combax depth compress --model mobilenetv2 --width 0.5 --data mnist5k --budgets 0.8,0.65,0.5``
``combax depth compress --budgets 0.6 --epochs 5 --finetune-epochs 2 --out depth_out --json``
``combax depth compress --budgets 12.5 --budget-unit ms --latency-table depth_out/latency_table.npz``
"""

from __future__ import annotations

import argparse
import json
import sys

from combax.commands._argtypes import non_negative_int, positive

DATASETS = ("mnist5k", "digits")  # = combax.adapters.depth_pipeline.DATASETS, which imports jax: not at CLI start


def _budgets(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated numbers, e.g. 0.8,0.65,0.5; got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("must hold at least one budget")
    return values


def _positions(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated positions, e.g. 1,2,4; got {text!r}") from None


def add_compress_parser(depth_subparsers) -> argparse.ArgumentParser:
    """Add the ``compress`` sub-subcommand to the ``combax depth`` sub-subparsers; returns its parser."""
    p = depth_subparsers.add_parser(
        "compress",
        help="end to end: train or load a chain CNN, latency/importance tables, DP, fine-tune, merge, ONNX, timing",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", default="mobilenetv2", help="mobilenetv2 (default) or vgg; chain CNNs only")
    p.add_argument("--width", type=positive(float), default=0.5, help="channel multiplier (default 0.5)")
    p.add_argument("--vgg-depth", type=int, default=11, help="VGG depth 11/13/16/19 with --model vgg (default 11)")
    p.add_argument("--data", choices=DATASETS, default="mnist5k", help="mnist5k (padded to 32x32) or digits (8x8)")
    p.add_argument("--stem-stride", type=int, default=1, help="MobileNetV2 stem stride, 1 or 2 (default 1)")
    p.add_argument("--budgets", type=_budgets, default=(0.8, 0.65, 0.5),
                   help="comma-separated latency budgets (default 0.8,0.65,0.5 of the base stack latency)")  # fmt: skip
    p.add_argument("--budget-unit", choices=("fraction", "ms"), default="fraction",
                   help="budgets as fractions of the base stack latency (default) or ms in table units")  # fmt: skip
    p.add_argument("--epochs", type=non_negative_int, default=4, help="base training epochs (default 4)")
    p.add_argument("--lr", type=positive(float), default=0.05, help="base training peak learning rate (0.05)")
    p.add_argument("--finetune-epochs", type=non_negative_int, default=2, help="fine-tuning epochs (default 2)")
    p.add_argument("--finetune-lr", type=positive(float), default=0.01, help="fine-tuning learning rate (0.01)")
    p.add_argument("--batch-size", type=positive(int), default=64, help="training minibatch (default 64)")
    p.add_argument("--importance", choices=("proxy", "finetune"), default="proxy",
                   help="importance-table method (default proxy: no fine-tuning per entry)")  # fmt: skip
    p.add_argument("--score", choices=("accuracy", "loss"), default="accuracy", help="importance score (accuracy)")
    p.add_argument("--alpha", type=float, default=0.0, help="single-layer normalisation of the importance (0)")
    p.add_argument("--latency-table", default=None, help="a saved latency table (.npz) instead of measuring it")
    p.add_argument("--importance-table", default=None, help="a saved importance table (.npz) instead of measuring")
    p.add_argument("--acts", type=_positions, default=None, help="extra structure to time: activations A (1,2,..)")
    p.add_argument("--cuts", type=_positions, default=None, help="extra structure to time: cuts S (with --acts)")
    p.add_argument("--no-baseline", action="store_true", help="skip the DepthShrinker-style block-merging baseline")
    p.add_argument("--timing-batch", type=positive(int), default=8, help="end-to-end timing batch (default 8)")
    p.add_argument("--table-batch", type=positive(int), default=8, help="latency-table timing batch (default 8)")
    p.add_argument("--threads", type=positive(int), default=1, help="onnxruntime intra-op threads (default 1)")
    p.add_argument("--rounds", type=positive(int), default=5, help="interleaved timing rounds (default 5)")
    p.add_argument("--runs", type=positive(int), default=30, help="timed runs per network per round (default 30)")
    p.add_argument("--seed", type=int, default=0, help="split, initialisation and shuffling seed (default 0)")
    p.add_argument("--out", default="compress_out", help="folder for checkpoint, tables, ONNX, report")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--no-progress", action="store_true", help="hide the stage lines and progress bars")
    p.set_defaults(func=cmd_compress)
    return p


def config_from_args(args):
    """The validated :class:`~combax.adapters.depth_pipeline.CompressConfig` of parsed options (ValueError if bad)."""
    import dataclasses

    from combax.adapters.depth_pipeline import CompressConfig, validate_config

    d = CompressConfig()
    cfg = CompressConfig(
        model=args.model, width=args.width, data=args.data, stem_stride=args.stem_stride, vgg_depth=args.vgg_depth,
        budgets=tuple(args.budgets), budget_unit=args.budget_unit,
        train=dataclasses.replace(d.train, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                                  seed=args.seed),
        finetune=dataclasses.replace(d.finetune, epochs=args.finetune_epochs, lr=args.finetune_lr,
                                     batch_size=args.batch_size, seed=args.seed),
        importance_method=args.importance, importance_score=args.score, alpha=args.alpha,
        baseline=not args.no_baseline and args.model != "vgg", acts=args.acts, cuts=args.cuts,
        table_batch=args.table_batch, timing_batch=args.timing_batch, threads=args.threads,
        timing_rounds=args.rounds, timing_runs=args.runs, seed=args.seed, out=args.out,
        progress=not args.no_progress,
    )  # fmt: skip
    return validate_config(cfg)


def _option_name(msg: str) -> str:
    """Rewrite the config field named in a message into its command-line option (``budgets`` -> ``--budgets``)."""
    for field, opt in (("`budgets`", "--budgets"), ("`model`", "--model"), ("`width`", "--width"),
                       ("`stem_stride`", "--stem-stride"), ("`vgg_depth`", "--vgg-depth"),
                       ("`acts`", "--acts"), ("`cuts`", "--cuts"), ("`latency` table", "--latency-table"),
                       ("`importance` table", "--importance-table"), ("`out`", "--out"),
                       ("`alpha`", "--alpha")):  # fmt: skip
        msg = msg.replace(field, f"`{opt}`")
    return msg


def cmd_compress(args) -> int:
    """Run ``combax depth compress``; returns the exit status (2 for bad options or inputs)."""
    from pathlib import Path

    try:
        cfg = config_from_args(args)
    except ValueError as exc:
        print(f"combax depth compress: error: {_option_name(str(exc))}", file=sys.stderr)
        return 2
    from combax.adapters.depth_pipeline import markdown, run_compress

    try:
        rep = run_compress(cfg, latency=args.latency_table, importance=args.importance_table)
    except (ValueError, ImportError, OSError) as exc:
        print(f"combax depth compress: error: {_option_name(str(exc))}", file=sys.stderr)
        return 2
    d = rep.to_dict()
    if args.json:
        print(json.dumps(d, indent=2))
    else:
        print(markdown(d))
        print(f"report: {Path(args.out) / 'report.json'} (.md, .png)")
    return 0
