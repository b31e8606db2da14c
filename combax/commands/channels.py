"""``combax channels``: optimal channel selection (discrete QCQP) from problem files, and the demo step.

Problem files
-------------
A channel-selection problem is stored as a compressed ``.npz`` (written by ``ChannelProblem.save`` or
``combax channels build``, read by ``combax.solvers.channels.load_problem``). With M convs and R residuals:

``widths``            (M+1,) int, channel counts of maps 0..M (map 0 = the input, always kept)
``conv_src``          (M,) int, the map conv k reads
``conv_dst``          (M,) int, the map conv k produces (each of 1..M exactly once)
``importance_<k>``    (C_dst, C_src) float >= 0, importance of each kept (out, in) channel pair of conv k
``cost``              (M,) float >= 0, resource per kept channel pair of conv k (e.g. 9 H W for FLOPs)
``linear_cost``       (M, 3) float, optional: (c_in, c_out, c_0) per conv of a fitted latency model
``budget``            scalar float, optional when ``--budget`` or ``--ratio`` is given
``residual_src``, ``residual_dst``  (R,) int, optional; ``residual_kind`` (R,) str in identity, zero_pad, projection
``group_size``        (M+1,) int, optional: one binary per group of channels (tile units)
``min_keep``          (M+1,) int, optional: the least number of kept channels per map (entry 0 ignored; default 1)

Examples
--------
``combax channels build resnet20 --ratio 0.5 --out r20.npz``
``combax channels solve r20.npz --method bnb --time-limit 60 --json``
``combax channels solve r20.npz --ratio 0.3 --method cpsat --time-limit 30 --out selection.npz``
``combax channels solve r20.npz --min-keep 4 --time-limit 60``  (every conv keeps at least 4 output channels)
"""

import argparse
import json
import sys
import time
from pathlib import Path

from combax.commands._channels_prune import add_prune_parser

DEMO_ORDER = 20

METHODS = ("bnb", "cpsat", "highs", "cbc", "greedy")
NETWORKS = ("resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "vgg16")
_DEMO_SEED = 0


def register(subparsers) -> argparse.ArgumentParser:
    """Add ``combax channels`` with its sub-subcommands; returns the ``channels`` parser."""
    p = subparsers.add_parser(
        "channels",
        help="optimal channel selection (discrete QCQP): build instances, solve them by branch-and-bound",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="channels_command", metavar="ACTION")
    add_subcommands(sub)
    add_prune_parser(sub)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
    return p


def add_subcommands(sub) -> None:
    """Add ``solve`` and ``build`` to the ``channels`` sub-subparsers (``prune`` and others may join them)."""
    s = sub.add_parser("solve", help="the best channel selection of a problem file within its resource budget")
    s.add_argument("problem", help="problem .npz (format: `combax channels --help`)")
    b = s.add_mutually_exclusive_group()
    b.add_argument("--budget", type=float, default=None, help="resource budget B (default: the file's)")
    b.add_argument("--ratio", type=float, default=None, help="budget as a fraction of the full network's resource")
    s.add_argument("--method", choices=METHODS, default="bnb", help="solver (default: bnb, combax's own)")
    s.add_argument("--time-limit", type=float, default=None, help="seconds; return the best found and its gap")
    s.add_argument("--rel-gap", type=float, default=0.0, help="stop at (bound - objective) / bound <= this")
    s.add_argument("--node-limit", type=int, default=None, help="(bnb) stop after this many nodes")
    s.add_argument(
        "--min-keep",
        type=int,
        default=None,
        metavar="K",
        help="every conv keeps at least K output channels (overrides the file's min_keep; default: the file's, or 1)",
    )
    s.add_argument("--progress", action="store_true", help="(bnb) show a progress bar with bound and gap")
    s.add_argument("--out", default=None, help="write the selection to this .npz (keep_<t>, keep_out_<k>)")
    s.add_argument("--json", action="store_true", help="print the result as JSON")
    s.set_defaults(func=_cmd_solve)

    d = sub.add_parser("build", help="write the problem of a standard network (synthetic or given weights)")
    d.add_argument("network", choices=NETWORKS, help="CIFAR ResNet-(6n+2) or VGG-16 (CIFAR)")
    d.add_argument("--ratio", type=float, default=0.5, help="budget as a fraction of the full resource (0.5)")
    d.add_argument("--resource", choices=("flops", "params"), default="flops", help="what the budget limits")
    d.add_argument("--seed", type=int, default=0, help="seed of the synthetic conv weights (default 0)")
    d.add_argument(
        "--weights",
        default=None,
        help="conv weights .npz (arrays in forward order, each (C_out, C_in, 3, 3)) instead of synthetic ones",
    )
    d.add_argument("--group-size", type=int, default=None, help="one binary per group of this many channels")
    d.add_argument("--out", required=True, help="output problem .npz")
    d.set_defaults(func=_cmd_build)


def _fail(exc) -> int:
    print(f"combax channels: error: {exc}", file=sys.stderr)
    return 2


def build_problem(network, ratio=0.5, resource="flops", seed=0, weights=None, group_size=None):
    """The :class:`~combax.solvers.channels.ChannelProblem` of a named network (see ``combax channels build``)."""
    import numpy as np

    from combax.solvers import channels

    if network not in NETWORKS:
        raise ValueError(f"`network` must be one of {NETWORKS}; got {network!r}")
    importance = seed
    if weights is not None:
        with np.load(Path(weights), allow_pickle=False) as z:
            importance = [z[k] for k in z.files]
    if network.startswith("resnet"):
        return channels.resnet_cifar(
            int(network[6:]), importance, resource=resource, ratio=ratio, group_size=group_size
        )
    return channels.vgg_chain(importance=importance, resource=resource, ratio=ratio, group_size=group_size)


def save_selection(path, sol) -> None:
    """Write a selection: ``keep_<t>`` per map and ``keep_out_<k>`` per conv (bool), plus the scalars."""
    import numpy as np

    arrays = {f"keep_{t}": np.asarray(k, bool) for t, k in enumerate(sol.keep)}
    arrays.update({f"keep_out_{k}": np.asarray(u, bool) for k, u in enumerate(sol.keep_out)})
    arrays.update(objective=np.float64(sol.objective), resource=np.float64(sol.resource), budget=sol.budget)
    np.savez_compressed(Path(path), **arrays)


def result_dict(sol, seconds=None) -> dict:
    """A JSON-ready summary of a :class:`~combax.solvers.channels.ChannelResult`."""
    import math

    f = lambda x: None if x is None or not math.isfinite(x) else float(x)  # noqa: E731
    out = {
        "status": str(sol.status),
        "method": sol.method,
        "objective": f(sol.objective),
        "resource": f(sol.resource),
        "budget": float(sol.budget),
        "bound": f(sol.bound),
        "gap": f(sol.gap),
        "seconds": float(sol.seconds if seconds is None else seconds),
        "n_nodes": int(sol.n_nodes),
        "min_resource": float(sol.min_resource),
        "message": sol.message,
    }
    if sol.keep is not None:
        out["kept_per_map"] = [int(k.sum()) for k in sol.keep]
        out["kept_out_per_conv"] = [int(u.sum()) for u in sol.keep_out]
    return out


def _cmd_solve(args) -> int:
    import dataclasses

    from combax.solvers import channels

    try:
        placeholder = 0.0 if args.ratio is not None else None  # replaced below; the file may hold no budget
        prob = channels.load_problem(args.problem, budget=args.budget if args.budget is not None else placeholder)
        if args.ratio is not None:
            if not args.ratio > 0:
                raise ValueError(f"`--ratio` must be > 0; got {args.ratio}")
            prob = prob.with_budget(args.ratio * prob.full_resource)
        if args.min_keep is not None:
            prob = dataclasses.replace(prob, min_keep=args.min_keep)
        sol = channels.solve(
            prob,
            method=args.method,
            time_limit=args.time_limit,
            rel_gap=args.rel_gap,
            node_limit=args.node_limit,
            verbose=args.progress,
        )
        if args.out and sol.keep is not None:
            save_selection(args.out, sol)
    except (ValueError, OSError, KeyError, ImportError) as exc:
        return _fail(exc)
    if args.json:
        out = result_dict(sol)
        out["min_keep"] = [int(k) for k in prob.min_counts[1:]]  # per map 1..M, in channels (rounded to groups)
        print(json.dumps(out, indent=2))
    else:
        print(f"status       {sol.status}")
        print(f"method       {sol.method}")
        print(f"message      {sol.message}")
        if sol.success:
            print(f"objective    {sol.objective:.9g}")
            print(f"bound        {sol.bound:.9g}   gap {sol.gap:.3e}")
            print(
                f"resource     {sol.resource:.9g} <= budget {sol.budget:.9g} ({sol.resource / prob.full_resource:.1%} of full)"
            )
            print(f"kept / map   {[int(k.sum()) for k in sol.keep]}")
        print(f"min resource {sol.min_resource:.9g}   solve {sol.seconds:.2f} s, {sol.n_nodes} nodes")
        if args.out and sol.keep is not None:
            print(f"selection written to {args.out}")
    return 0 if sol.success else 1


def _cmd_build(args) -> int:
    try:
        prob = build_problem(args.network, args.ratio, args.resource, args.seed, args.weights, args.group_size)
        prob.save(args.out)
    except (ValueError, OSError, KeyError) as exc:
        return _fail(exc)
    print(
        f"{args.network}: {prob.n_maps} convs, {prob.n_binaries} free binaries, {prob.n_bilinear} bilinear terms; "
        f"budget {prob.budget:.6g} = {args.ratio:g} x full {args.resource} {prob.full_resource:.6g}; "
        f"written to {args.out}"
    )
    return 0


# ------------------------------------------------------------------------------------------------ demo
def demo(out_dir: Path) -> list:
    """CIFAR ResNet-20, FLOPs budget 50 %, synthetic weights (seed 0): B&B with a proven gap, CP-SAT and HiGHS.

    Rows: numba first call; ResNet-20 in tile units of 8 channels solved to proven optimality (HiGHS agrees);
    per-channel ResNet-20 by B&B (20 s, proven gap), the greedy, CP-SAT and HiGHS (10 s each) on the same instance.
    Every selection is re-checked by ``ChannelProblem.evaluate`` (no inactive weight, resource <= budget).
    """
    from combax.demo import DemoRow
    from combax.solvers import channels

    rows = []
    t0 = time.perf_counter()
    channels.solve(channels.resnet_cifar(8, 0, ratio=0.5), "bnb", node_limit=5)
    first = time.perf_counter() - t0
    rows.append(DemoRow("channels", "numba kernels, first call", f"{first:.2f} s", "compile or cache load", first))

    def valid(prob, sol):
        return sol.keep is not None and prob.evaluate(sol.keep_out, sol.keep).feasible

    # tile units of 8 channels: proven optimal, cross-checked by the MILP
    t0 = time.perf_counter()
    pg = channels.resnet_cifar(20, _DEMO_SEED, ratio=0.5, group_size=8)
    bg = channels.solve(pg, "bnb", time_limit=20)
    hg = channels.solve(pg, "highs", time_limit=20)
    agree = hg.status == "optimal" and abs(hg.objective - bg.objective) <= 1e-6 * max(1.0, abs(bg.objective))
    rows.append(
        DemoRow(
            "channels",
            f"ResNet-20, FLOPs 50 %, groups of 8 ({pg.n_binaries} binaries): B&B",
            f"{bg.status}: I = {bg.objective:.4f}, bound {bg.bound:.4f}, gap {bg.gap:.1e}, {bg.n_nodes} nodes, "
            f"B&B {bg.seconds:.1f} s / HiGHS {hg.seconds:.1f} s",
            f"HiGHS F1 MILP {hg.status} {hg.objective:.4f} (agrees: {agree}); valid: {valid(pg, bg)}",
            time.perf_counter() - t0,
        )
    )

    prob = channels.resnet_cifar(20, _DEMO_SEED, ratio=0.5)
    name = f"ResNet-20, FLOPs 50 %, per channel ({prob.n_binaries} binaries, {prob.n_bilinear} bilinear terms)"
    sols = {
        "bnb": channels.solve(prob, "bnb", time_limit=20),
        "greedy": channels.solve(prob, "greedy"),
        "cpsat": channels.solve(prob, "cpsat", time_limit=10),
        "highs": channels.solve(prob, "highs", time_limit=10),
    }
    b = sols["bnb"]
    best_other = max((s.objective for m, s in sols.items() if m != "bnb" and s.keep is not None), default=float("nan"))
    for method, s in sols.items():
        if s.keep is None:
            res = f"{s.status}: no solution within {s.seconds:.0f} s"
        else:
            bound = f"bound {s.bound:.4f}, gap {s.gap:.2%}" if s.bound == s.bound else "no bound"
            st = "heuristic" if method == "greedy" else s.status  # the greedy's bound is the root bound of B&B
            res = f"{st}: I = {s.objective:.4f}, {bound}; FLOPs {s.resource / prob.full_resource:.1%} of full"
        if method == "bnb":
            check = (
                f"valid: {valid(prob, s)}; B&B bound >= every other method's I ({best_other:.4f}): "
                f"{b.bound >= best_other - 1e-9}"
            )
        else:
            check = f"valid: {valid(prob, s)}" if s.keep is not None else ""
        rows.append(DemoRow("channels", f"{name}: {method}", res, check, s.seconds))
    return rows
