"""``combax depth``: solve depth-compression problems from files, and the demo step.

Inputs
------
TABLE
    A latency table in the original repository's CSV format (``id,st,end,time,stdev``, one row per allowed merged
    block), or a combax problem ``.npz`` (``latency``, ``importance``, ``optional``; then ``--importance`` is
    optional).
``--importance FILE``
    ``.npy`` (the array), ``.npz`` (key ``importance``), or CSV with header ``st,end,importance`` (plain) or
    ``st,end,x,y,importance`` (boundary flags ``x`` at ``st`` and ``y`` at ``end``). Rows / entries not given are
    not allowed. Shape (L+1, L+1) or (L+1, L+1, 2, 2).
``--optional``
    Positions whose boundary may carry no activation: a comma-separated list, ``none``, or ``auto`` (default:
    every position where the flagged importance has a finite entry with flag 0 there).

Examples
--------
``combax depth solve time.csv --importance imp.csv --budget 25 --resolution 0.05 --json``
``combax depth front time.csv --importance imp.csv --plot front.png``
``combax depth compress --model mobilenetv2 --width 0.5 --data mnist5k --budgets 0.8,0.65,0.5`` (end to end)
"""

import argparse
import json
import sys
import time
from pathlib import Path

DEMO_ORDER = 10

_DEMO_BUDGETS = (27.0, 26.0, 23.0, 20.0)  # MobileNetV2-1.4 budgets of the paper (ms, table units)
_DEMO_SEED = 0


def register(subparsers) -> argparse.ArgumentParser:
    """Add ``combax depth`` with its sub-subcommands; returns the ``depth`` parser."""
    p = subparsers.add_parser(
        "depth",
        help="CNN depth compression: two-stage DP (solve under a latency budget, exact Pareto front)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    depth_sub = p.add_subparsers(dest="depth_command", metavar="ACTION")
    add_subcommands(depth_sub)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
    return p


def add_subcommands(depth_sub) -> None:
    """Add ``solve``, ``front`` and ``compress`` (the end-to-end pipeline) to the ``depth`` sub-subparsers."""
    from combax.commands._depth_compress import add_compress_parser

    s = depth_sub.add_parser("solve", help="best activations and cuts within a latency budget")
    _add_inputs(s)
    s.add_argument("--budget", type=float, required=True, help="latency budget T0, in the table's units (ms)")
    s.add_argument(
        "--resolution", type=float, default=None, help="discretise latency in steps (e.g. 0.05); default exact"
    )
    s.add_argument("--rounding", choices=("ceil", "floor"), default="ceil", help="rounding with --resolution")
    s.add_argument("--json", action="store_true", help="print the solution as JSON")
    s.set_defaults(func=_cmd_solve)

    f = depth_sub.add_parser("front", help="every non-dominated (latency, importance) solution, in one solve")
    _add_inputs(f)
    f.add_argument("--plot", default=None, help="write a plot of the front to this file (e.g. front.png)")
    f.add_argument("--json", action="store_true", help="print the front as JSON")
    f.set_defaults(func=_cmd_front)

    add_compress_parser(depth_sub)


def _add_inputs(p) -> None:
    p.add_argument("table", help="latency CSV (id,st,end,time,stdev) or a combax problem .npz")
    p.add_argument("--importance", default=None, help="importance .npy/.npz/CSV (st,end[,x,y],importance)")
    p.add_argument("--optional", default="auto", help="comma-separated optional positions, 'none' or 'auto'")


def load_problem(table, importance=None, optional="auto"):
    """Build a :class:`~combax.solvers.depth.DepthProblem` from the command-line inputs."""
    import numpy as np

    from combax.solvers import depth

    table = Path(table)
    if table.suffix.lower() == ".npz" and importance is None:
        return depth.load_npz(table)
    if importance is None:
        raise ValueError("`--importance` is required unless TABLE is a combax problem .npz")
    latency = depth.load_npz(table).latency if table.suffix.lower() == ".npz" else depth.read_csv_table(table)
    imp = depth.read_importance(importance, latency.shape[0])
    if optional == "none":
        opt = ()
    elif optional == "auto":
        if imp.ndim == 4:
            zero_at = np.zeros(imp.shape[0], dtype=bool)
            zero_at |= np.isfinite(imp[:, :, 0, :]).any(axis=(1, 2))
            zero_at |= np.isfinite(imp[:, :, :, 0]).any(axis=(0, 2))
            zero_at[0] = False
            opt = tuple(int(p) for p in np.flatnonzero(zero_at))
        else:
            opt = ()
    else:
        try:
            opt = tuple(int(p) for p in optional.split(",") if p.strip())
        except ValueError:
            raise ValueError(
                f"`--optional` must be 'auto', 'none' or comma-separated integers; got {optional!r}"
            ) from None
    return depth.DepthProblem(latency, imp, opt)


def _fail(exc) -> int:
    print(f"combax depth: error: {exc}", file=sys.stderr)
    return 2


def _cmd_solve(args) -> int:
    from combax.solvers import depth

    try:
        prob = load_problem(args.table, args.importance, args.optional)
        t0 = time.perf_counter()
        sol = depth.solve(prob, args.budget, resolution=args.resolution, rounding=args.rounding)
        seconds = time.perf_counter() - t0
    except (ValueError, OSError) as exc:
        return _fail(exc)
    if args.json:
        out = {
            "status": str(sol.status),
            "objective": sol.objective,
            "latency": sol.latency,
            "int_latency": sol.int_latency,
            "activations": list(sol.activations),
            "cuts": list(sol.cuts),
            "boundaries": list(sol.boundaries),
            "flags": list(sol.flags),
            "budget": sol.budget,
            "resolution": sol.resolution,
            "rounding": sol.rounding,
            "min_latency": sol.min_latency,
            "message": sol.message,
            "seconds": seconds,
        }
        print(json.dumps(out, indent=2))
    else:
        print(f"status       {sol.status}")
        print(f"message      {sol.message}")
        if sol.success:
            print(f"objective    {sol.objective:.6g}")
            lat = f"{sol.latency:.6g}" + (f" (integer {sol.int_latency})" if sol.int_latency is not None else "")
            print(
                f"latency      {lat} <= budget {sol.budget:g}" if sol.latency <= sol.budget else f"latency      {lat}"
            )
            print(f"activations  {list(sol.activations)}")
            print(f"cuts         {list(sol.cuts)}")
        print(f"min latency  {sol.min_latency:.6g}   solve {seconds * 1e3:.2f} ms")
    return 0 if sol.success else 1


def _cmd_front(args) -> int:
    from combax.solvers import depth

    try:
        prob = load_problem(args.table, args.importance, args.optional)
        t0 = time.perf_counter()
        front = depth.pareto_front(prob)
        seconds = time.perf_counter() - t0
    except (ValueError, OSError) as exc:
        return _fail(exc)
    if args.json:
        pts = [
            {"latency": p.latency, "objective": p.objective, "activations": list(p.activations), "cuts": list(p.cuts)}
            for p in front
        ]
        print(json.dumps({"n_points": len(front), "seconds": seconds, "points": pts}, indent=2))
    else:
        print(f"{len(front)} non-dominated solutions ({seconds * 1e3:.2f} ms)")
        print(f"{'latency':>10} {'objective':>10} {'#act':>5} {'#cuts':>6}")
        for p in front:
            print(f"{p.latency:10.4f} {p.objective:10.4f} {len(p.activations):5d} {len(p.cuts):6d}")
    if args.plot:
        plot_front(front, args.plot)
        print(f"plot written to {args.plot}", file=sys.stderr if args.json else sys.stdout)
    return 0 if len(front) else 1


def plot_front(front, path, budgets=(), solutions=(), title="Pareto front of the depth-compression surrogate"):
    """Step plot of a :class:`~combax.solvers.depth.ParetoFront`, with optional budgets and solutions marked."""
    from matplotlib.figure import Figure  # no pyplot: leaves the caller's backend alone

    fig = Figure(figsize=(7, 4.2))
    ax = fig.subplots()
    ax.step(
        front.latency, front.objective, where="post", color="C0", lw=1.2, label=f"exact front ({len(front)} points)"
    )
    ax.plot(front.latency, front.objective, ".", color="C0", ms=3)
    for k, b in enumerate(budgets):
        ax.axvline(b, color="0.6", ls="--", lw=0.8, label="budgets" if k == 0 else None)
    for label, sols, marker in solutions:
        ok = [s for s in sols if s.success]
        ax.plot([s.latency for s in ok], [s.objective for s in ok], marker, ms=7, mfc="none", label=label)
    ax.set_xlabel("latency (sum of T over merged convs, table units)")
    ax.set_ylabel("surrogate importance (sum of I)")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def demo(out_dir: Path) -> list:
    """MobileNetV2-1.4 released latency table + generated importance: stage 1, exact front, budgeted solves.

    Importance: :func:`combax.solvers.depth.synthetic_importance` with ``seed=0`` and ``alpha=1.2`` on the 315
    flag quadruples of the original implementation (the paper's measured tables were never published).
    Then a tiny end-to-end ``combax depth compress`` run (:func:`_demo_compress`) in ``out_dir / "depth_compress"``.
    """
    import numpy as np

    from combax.data import depth_table_path
    from combax.demo import DemoRow
    from combax.solvers import depth

    rows = []
    structure = depth.mbv2_structure()

    # numba: the first calls compile, or load the cached machine code (reported on its own row)
    t0 = time.perf_counter()
    tiny = depth.random_problem(4, seed=0, flagged=True)
    depth.pareto_front(tiny)
    depth.solve(tiny, 5.0, resolution=0.5)
    first_call = time.perf_counter() - t0
    rows.append(
        DemoRow("depth", "numba kernels, first call", f"{first_call:.2f} s", "compile or cache load", first_call)
    )

    t0 = time.perf_counter()
    T = depth.read_csv_table(depth_table_path("mbv2_1.4"))
    released, breaks = depth.read_opt_time_csv(depth_table_path("mbv2_1.4", "opt_time"))
    s1 = depth.stage1(T)
    allowed = ~np.isnan(T)
    same = int(np.sum(np.abs(s1.time[allowed] - released[allowed]) <= 1e-12))
    same_breaks = sum(s1.breaks(i, j) == b for (i, j), b in breaks.items())
    rows.append(
        DemoRow(
            "depth",
            "stage 1, MBV2-1.4 released table (L=50)",
            f"{int(allowed.sum())} blocks; fastest full chain {s1.time[0, 50]:.2f} ms (singles {np.nansum(np.diag(T, 1)):.2f} ms)",
            f"released opt_time: {same}/{len(breaks)} times, {same_breaks}/{len(breaks)} breaks",
            time.perf_counter() - t0,
        )
    )

    t0 = time.perf_counter()
    imp = depth.synthetic_importance(structure.valid_blocks(), structure.optional, seed=_DEMO_SEED, alpha=1.2)
    prob = depth.DepthProblem(T, imp, structure.optional)
    t1 = time.perf_counter()
    front = depth.pareto_front(prob)
    front_s = time.perf_counter() - t1
    exact = [depth.solve(prob, b) for b in _DEMO_BUDGETS]
    agree = sum(
        s.objective == front.objective[front.best_index(b)] and s.latency == front.latency[front.best_index(b)]
        for s, b in zip(exact, _DEMO_BUDGETS)
    )
    milp = [depth.milp_reference(prob, b) for b in _DEMO_BUDGETS]
    milp_ok = sum(abs(m - s.objective) <= 1e-6 for m, s in zip(milp, exact))
    rows.append(
        DemoRow(
            "depth",
            "exact Pareto front, MBV2-1.4 + generated importance",
            f"{len(front)} points, {front.latency[0]:.2f}..{front.latency[-1]:.2f} ms, in {front_s * 1e3:.1f} ms",
            f"solve(T0) = best front point {agree}/{len(_DEMO_BUDGETS)}; HiGHS MILP {milp_ok}/{len(_DEMO_BUDGETS)}",
            time.perf_counter() - t0,
        )
    )

    ceil = []
    for b, ex in zip(_DEMO_BUDGETS, exact):
        t0 = time.perf_counter()
        c = depth.solve(prob, b, resolution=0.05)
        fl = depth.solve(prob, b, resolution=0.05, rounding="floor")
        dt = time.perf_counter() - t0
        ceil.append(c)
        rows.append(
            DemoRow(
                "depth",
                f"T0 = {b:g} ms: exact / ceil 0.05 / floor 0.05",
                f"I = {ex.objective:.3f} / {c.objective:.3f} / {fl.objective:.3f}; "
                f"latency {ex.latency:.2f} / {c.latency:.2f} / {fl.latency:.2f} ms; |A| = {len(ex.activations)}",
                f"ceil <= exact <= floor: {c.objective <= ex.objective <= fl.objective}; ceil latency <= T0: {c.latency <= b}",
                dt,
            )
        )

    plot = Path(out_dir) / "depth_front.png"
    plot_front(
        front,
        plot,
        budgets=_DEMO_BUDGETS,
        solutions=[("exact solve", exact, "o"), ("ceil 0.05 ms", ceil, "s")],
        title="MobileNetV2-1.4 (released TensorRT table, generated importance)",
    )
    rows.append(DemoRow("depth", "plot", str(plot), "", 0.0))
    rows.extend(_demo_compress(Path(out_dir) / "depth_compress"))
    return rows


_DEMO_COMPRESS_BUDGET = 0.6  # fraction of the base stack latency (sum of the single-conv table entries)


def _demo_compress_config(out: Path):
    """The demo's end-to-end run: a tiny MobileNetV2 on sklearn digits, sized to take 20-35 s on 2 shared cores.

    Shrunk from the benchmark (``benchmarks/depth_e2e.py``: MobileNetV2-0.5 on MNIST-5k, 23 min): width 0.25, two
    settings rows (L = 8 convs), 8x8 digits, 6 base epochs and 1 fine-tuning epoch, one budget, a batch of 64 for
    both tables so that compute rather than per-call overhead is timed, and no control run.
    """
    from combax.adapters.depth_pipeline import CompressConfig
    from combax.models.classifier_train import TrainConfig

    return CompressConfig(
        model="mobilenetv2",
        width=0.25,
        data="digits",
        settings=((1, 16, 1, 1), (6, 24, 2, 2)),
        budgets=(_DEMO_COMPRESS_BUDGET,),
        train=TrainConfig(epochs=6, batch_size=32, lr=0.05, warmup_steps=5, progress=False),
        finetune=TrainConfig(epochs=1, batch_size=32, lr=0.01, warmup_steps=0, progress=False),
        table_batch=64,
        table_warmup=1,
        table_runs=3,
        timing_batch=64,
        timing_warmup=2,
        timing_runs=20,
        timing_rounds=5,
        baseline=True,
        control=False,
        seed=_DEMO_SEED,
        out=str(out),
        progress=False,
    )


def _demo_compress(out: Path) -> list:
    """``combax depth compress`` end to end on a tiny network: rows for latency, accuracy, merging, baseline, plot."""
    from combax.adapters.depth_pipeline import run_compress
    from combax.demo import DemoRow

    config = _demo_compress_config(out)
    t0 = time.perf_counter()
    rep = run_compress(config)
    seconds = time.perf_counter() - t0
    base, run, net = rep.base, rep.runs[0], rep.network
    dp, bl = run["dp"], run["baseline"]
    c = config
    name = f"{net['name']}, digits 8x8"
    loaded = "base (loaded)" in rep.seconds
    smoke = (
        f"smoke demo: tiny net (L = {net['L']}), {net['n_test']} test images, {c.finetune.epochs} fine-tune epoch; "
        "noisy. Full scale: benchmarks/results/depth_e2e.md"
    )
    rows = [
        DemoRow(
            "depth",
            f"compress end to end, {name}: measured latency (budget {run['budget']:g} x stack)",
            f"base {base['latency_ms']:.3f} ms -> DP {dp['latency_ms']:.3f} ms per batch of {c.timing_batch} "
            f"({c.backend}, {c.threads} thread): speed-up {dp['speedup']:.2f}x wall / {dp['speedup_cpu']:.2f}x CPU; "
            f"convs {base['n_convs']} -> {dp['n_convs']}; predicted stack {base['stack_latency_ms']:.3f} -> "
            f"{dp['predicted_latency_ms']:.3f} ms",
            smoke + ("; base loaded from an earlier demo run" if loaded else ""),
            seconds,
        ),
        DemoRow(
            "depth",
            f"compress end to end, {name}: test accuracy",
            f"base {100 * base['accuracy']:.2f} % -> DP {100 * dp['accuracy']:.2f} % "
            f"(before fine-tuning {100 * dp['accuracy_before_finetune']:.2f} %): drop {dp['drop_points']:+.2f} points",
            f"held-out test split; base {c.train.epochs} epochs on {net['n_train']} images, so the drop is noisy",
            0.0,
        ),
    ]
    nets = [base, dp, bl]
    worst = max(n["merged_max_abs_diff"] for n in nets)
    worst64 = max(n["merged_max_abs_diff_f64"] for n in nets)
    worst_onnx = max(n["onnx_max_abs_diff"] for n in nets)
    rows.append(
        DemoRow(
            "depth",
            "compress end to end: merged == unmerged (base, DP, baseline)",
            f"max abs logit diff {worst:.1e} (float32), {worst64:.1e} (float64); ONNX vs JAX {worst_onnx:.1e}",
            f"<= 1e-4 on all {net['n_test']} test images: {worst <= 1e-4}",
            0.0,
        )
    )
    gap = 100 * (dp["accuracy"] - bl["accuracy"])
    rows.append(
        DemoRow(
            "depth",
            "compress end to end: DepthShrinker-style baseline at matched latency",
            f"blocks {bl['blocks']}: predicted {bl['predicted_latency_ms']:.3f} ms (DP {dp['predicted_latency_ms']:.3f}); "
            f"measured speed-up {bl['speedup']:.2f}x (DP {dp['speedup']:.2f}x); accuracy {100 * bl['accuracy']:.2f} % "
            f"(DP - baseline {gap:+.2f} points)",
            (
                "latency matched (baseline predicted <= DP's)"
                if bl["matched"]
                else "latency NOT matched: merging every positive-saving block stays above the DP's prediction"
            )
            + "; same fine-tuning as DP; one seed, noisy",
            0.0,
        )
    )
    rows.append(
        DemoRow("depth", "compress end to end: report and plot", str(out / "report.png"), str(out / "report.md"), 0.0)
    )
    return rows
