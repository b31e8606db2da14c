"""Channel selection on small trained networks: combax B&B (with and without its budget-exact DP) vs HiGHS and CP-SAT.

Instances: CIFAR-style ResNet-8 of base width 4 and 8 (76 and 152 free binaries), trained for 3 epochs on
scikit-learn's digits (seed 0, a few seconds each), importances from ``combax.adapters.pruning.channel_problem`` under
both normalisations (``"frobenius"``, the paper's; ``"sum"``, the pruning pipeline's choice), FLOPs budgets of 30 %,
50 % and 70 %. On networks this small one count step moves a large share of the budget, and the Lagrangian of the
budget leaves a duality gap that the budget-exact count DP (``combax.solvers._channels_budget``) closes; the ablation
column runs the same B&B with that DP switched off (``_channels_bnb.BUDGET_DP = False``).

Every method gets the same time limit and ``rel_gap`` (1e-6); CP-SAT runs with the greedy hint. A run "finishes"
when it proves optimality. The kernels are warmed before timing (numba compile time: ``benchmarks/channels.py``).

Run from the repository root: ``python benchmarks/channels_small.py [--quick]``. Writes
benchmarks/results/channels_small.{json,md}.
"""

import argparse
import json
import os
import platform
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from _common import bnb_nodes_note
from tqdm import tqdm

from combax.solvers import _channels_bnb, channels

SEED = 0
REL_GAP = 1e-6
WIDTHS = (4, 8)
NORMALISATIONS = ("frobenius", "sum")
RATIOS = (0.3, 0.5, 0.7)
EPOCHS = 3
METHODS = ("bnb", "bnb_no_budget_dp", "highs", "cpsat")
OUT = Path(__file__).resolve().parent / "results"


@contextmanager
def _budget_dp(on: bool):
    old = _channels_bnb.BUDGET_DP
    _channels_bnb.BUDGET_DP = on
    try:
        yield
    finally:
        _channels_bnb.BUDGET_DP = old


def _run(prob, method, limit):
    t0 = time.perf_counter()
    with _budget_dp(method != "bnb_no_budget_dp"):
        r = channels.solve(prob, "bnb" if method.startswith("bnb") else method, time_limit=limit, rel_gap=REL_GAP)
    wall = time.perf_counter() - t0
    return {
        "status": str(r.status),
        "finished": r.status == "optimal",
        "objective": float(r.objective),
        "bound": None if not np.isfinite(r.bound) else float(r.bound),
        "gap": None if not np.isfinite(r.gap) else float(r.gap),
        "seconds": wall,
        "n_nodes": int(r.n_nodes),
        "message": r.message,
    }


def trained_problems(widths, quick):
    """(name, width, normalisation, ratio, ChannelProblem) of ResNet-8s trained on digits."""
    from combax.adapters import pruning
    from combax.adapters.pruning_pipeline import build_model, load_data
    from combax.models.classifier_train import TrainConfig, fit

    x_tr, y_tr, _, _ = load_data("digits", SEED)
    shape = x_tr.shape[1:]
    out = []
    for width in widths:
        model = build_model("resnet8", width)
        cfg = TrainConfig(epochs=1 if quick else EPOCHS, batch_size=64, lr=0.1, seed=SEED, progress=False)
        v = fit(model, x_tr, y_tr, cfg, desc=f"train resnet8 width {width}")
        for norm in NORMALISATIONS:
            for ratio in RATIOS:
                prob = pruning.channel_problem(model, v, "flops", ratio, input_shape=shape, normalisation=norm)
                out.append((f"resnet8 w{width}", width, norm, ratio, prob))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="width 4 only, 1 epoch, 5 s limits (results are not kept)")
    ap.add_argument("--limit", type=float, default=30.0, help="time limit (s) of every method (default 30)")
    ap.add_argument("--render", action="store_true", help="only rewrite channels_small.md from channels_small.json")
    args = ap.parse_args(argv)
    if not args.limit > 0:
        ap.error(f"--limit must be a positive number of seconds; got {args.limit}")
    if args.render:
        md = _markdown(json.loads((OUT / "channels_small.json").read_text()))
        (OUT / "channels_small.md").write_text(md)
        print(md)
        return
    limit = 5.0 if args.quick else args.limit
    channels.solve(channels.resnet_cifar(8, 0, ratio=0.5), "bnb", node_limit=20)  # warm the kernels
    insts = trained_problems(WIDTHS[:1] if args.quick else WIDTHS, args.quick)
    results = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "seed": SEED,
        "epochs": 1 if args.quick else EPOCHS,
        "rel_gap": REL_GAP,
        "time_limit_s": limit,
        "methods": list(METHODS),
        "instances": [],
        "load_average_start": list(os.getloadavg()),
    }
    bar = tqdm(total=len(insts) * len(METHODS), desc="channels_small", unit="run")
    for name, width, norm, ratio, prob in insts:
        row = {"network": name, "width": width, "normalisation": norm, "flops_ratio": ratio,
               "n_free_binaries": prob.n_binaries, "budget": prob.budget, "runs": {}}  # fmt: skip
        for method in METHODS:
            bar.set_postfix_str(f"{name} {norm} {ratio:.0%} {method}")
            row["runs"][method] = _run(prob, method, limit)
            bar.update()
        results["instances"].append(row)
    bar.close()
    results["load_average_end"] = list(os.getloadavg())
    runs = [r["runs"] for r in results["instances"]]
    results["summary"] = {m: {"finished": sum(r[m]["finished"] for r in runs),
                              "best_objective": sum(r[m]["objective"] >= max(x["objective"] for x in r.values())
                                                    - 1e-9 * abs(r[m]["objective"]) for r in runs)}
                          for m in METHODS}  # fmt: skip
    md = _markdown(results)
    if not args.quick:
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / "channels_small.json").write_text(json.dumps(results, indent=2) + "\n")
        (OUT / "channels_small.md").write_text(md)
    print(md)


def _cell(r):
    if r["finished"]:
        return f"**{r['seconds']:.2f} s** ({r['n_nodes']} nodes)"
    gap = "n/a" if r["gap"] is None else f"{r['gap']:.2e}"
    return f"gap {gap} at {r['seconds']:.0f} s"


def _markdown(res):
    lines = [
        "# Channel selection on small trained ResNets",
        "",
        f"ResNet-8 trained {res['epochs']} epoch(s) on digits (seed {res['seed']}); every method {res['time_limit_s']:g} s, "
        f"rel_gap {res['rel_gap']:g}; {res['machine']}; load average {res['load_average_start'][0]:.2f} at the "
        f"start, {res['load_average_end'][0]:.2f} at the end. Cells: time to proven optimality (bold), else the gap "
        "at the limit. `bnb -dp`: the same B&B without its budget-exact count DP. " + bnb_nodes_note(),
        "",
        "| network | importance | FLOPs | binaries | bnb | bnb -dp | HiGHS | CP-SAT | best objective |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in res["instances"]:
        r = row["runs"]
        best = max(x["objective"] for x in r.values())
        lines.append(
            f"| {row['network']} | {row['normalisation']} | {row['flops_ratio']:.0%} | {row['n_free_binaries']} | "
            + " | ".join(_cell(r[m]) for m in res["methods"])
            + f" | {best:.6f} |"
        )
    s = res["summary"]
    lines += [
        "",
        "Proven within the limit: "
        + ", ".join(f"{m} {s[m]['finished']}/{len(res['instances'])}" for m in res["methods"])
        + ". Best objective (ties included): "
        + ", ".join(f"{m} {s[m]['best_objective']}" for m in res["methods"])
        + ".",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
