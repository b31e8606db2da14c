"""Channel pruning end to end (issue 7): ResNet-20 on MNIST-5k (padded to 32x32) at 50 % FLOPs, 3 seeds.

Per seed: the base network is trained; then ours (B&B channel selection of the discrete QCQP, physically pruned,
fine-tuned) and the greedy L1-filter baseline (PFEC-style, uniform ratio, exact bookkeeping so it meets the same
budget) at the same FLOPs target, both fine-tuned the same way. Reported: test accuracy of base / ours / greedy,
that the pruned network meets the budget exactly (FLOPs recomputed from the kernel shapes equal the solver's
resource and are <= the budget), B&B status and gap, and the measured onnxruntime speed-up.

Then the latency model: every distinct conv shape of ResNet-20 timed over a grid of (n_in, n_out) in tile units of
8 channels, the quadratic fitted by least squares, and its end-to-end error on random pruned networks; and a
latency-constrained pruning (50 % of the predicted latency) of the seed-0 base network, predicted vs measured.

Writes benchmarks/results/pruning_e2e.json and .md (after every stage, so an interrupted run leaves partial
results). Run from the repository root: ``python benchmarks/pruning_e2e.py`` (about 40 minutes on 2 shared cores).
Set ``PRUNING_E2E_QUICK=1`` for a smoke run (ResNet-8 on digits).
"""

import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from combax.adapters.latency_model import (  # noqa: E402
    fit_latency_model,
    latency_validation,
    validate_latency_model,
)
from combax.adapters.pruning_pipeline import PruneConfig, build_model, run_prune  # noqa: E402

QUICK = os.environ.get("PRUNING_E2E_QUICK") == "1"
SEEDS = (0, 1, 2)
CONFIG = PruneConfig(
    model="resnet8" if QUICK else "resnet20",
    data="digits" if QUICK else "mnist5k",
    resource="flops",
    ratio=0.5,
    width=8 if QUICK else 16,
    epochs=1 if QUICK else 2,
    lr=0.1,
    finetune_epochs=1,
    finetune_lr=0.02,
    batch_size=64,
    time_limit=5.0 if QUICK else 20.0,
    baseline=True,
    latency_batch=8,
    latency_threads=1,
    latency_runs=30,
    tile=8,
    progress=True,
)
N_RANDOM = 4 if QUICK else 12
LATENCY_RATIO = 0.7
OUT = ROOT / "benchmarks" / "results"
CACHE = Path(os.environ.get("PRUNING_E2E_CACHE", "/tmp/combax_pruning_e2e"))
NAME = "pruning_e2e_quick" if QUICK else "pruning_e2e"


def _mean_std(xs):
    a = np.asarray([x for x in xs if x is not None], dtype=np.float64)
    if a.size == 0:
        return None, None
    return float(a.mean()), float(a.std())


def summarise(runs: list) -> dict:
    s = {}
    for key, get in (
        ("base_accuracy", lambda r: r["base_accuracy"]),
        ("ours_accuracy", lambda r: r["pruned_accuracy"]),
        ("ours_accuracy_before_finetune", lambda r: r["pruned_accuracy_before"]),
        ("greedy_accuracy", lambda r: r["greedy"]["accuracy"]),
        ("greedy_accuracy_before_finetune", lambda r: r["greedy"]["accuracy_before"]),
        ("ours_speedup", lambda r: r["speedup"]),
        ("greedy_speedup", lambda r: r["greedy"]["speedup"]),
        ("ours_flops_fraction", lambda r: r["resource_from_shapes"] / r["full_resource"]),
        ("greedy_flops_fraction", lambda r: r["greedy"]["resource_from_shapes"] / r["full_resource"]),
        ("bnb_gap", lambda r: r["solver"]["gap"]),
    ):
        s[key] = _mean_std([get(r) for r in runs])
    s["ours_drop_points"] = _mean_std([100 * (r["base_accuracy"] - r["pruned_accuracy"]) for r in runs])
    s["greedy_drop_points"] = _mean_std([100 * (r["base_accuracy"] - r["greedy"]["accuracy"]) for r in runs])
    s["all_meet_budget_exactly"] = all(r["meets_budget"] for r in runs)
    return s


def write(results: dict) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{NAME}.json").write_text(json.dumps(results, indent=2))
    (OUT / f"{NAME}.md").write_text(markdown(results))


def _pm(ms, scale=1.0, digits=2):
    m, s = ms
    if m is None:
        return "-"
    return f"{scale * m:.{digits}f} ± {scale * s:.{digits}f}"


def markdown(res: dict) -> str:
    c = res["config"]
    lines = [
        f"# {NAME}: channel pruning end to end (issue 7)",
        "",
        f"{c['model']} (width {c['width']}) on {c['data']}{' (padded to 32x32)' if c['data'] == 'mnist5k' else ''}, "
        f"stratified 80/20 split; FLOPs ratio {c['ratio']}; seeds {list(res['seeds_done'])}. Base: {c['epochs']} "
        f"epochs SGD-Nesterov lr {c['lr']} cosine, batch {c['batch_size']}; fine-tuning {c['finetune_epochs']} "
        f"epochs lr {c['finetune_lr']} (ours and greedy alike). B&B time limit {c['time_limit']} s. Latency: "
        f"onnxruntime CPU, batch {c['latency_batch']}, {c['latency_threads']} thread(s), median of "
        f"{c['latency_runs']} runs.",
        "",
        f"Machine: {res['machine']}. **Shared with other jobs while this ran (load average several times the core "
        "count): wall times and latencies are noisy, and the epoch counts are small to fit the 40-minute budget.**",
        "",
        "## Per seed",
        "",
        "| seed | base acc | ours acc (before FT) | greedy acc (before FT) | ours FLOPs = solver = shapes <= B | "
        "B&B status / gap | ours speed-up | greedy FLOPs | greedy speed-up |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in res["runs"]:
        g = r["greedy"]
        lines.append(
            f"| {r['config']['seed']} | {100 * r['base_accuracy']:.2f} | {100 * r['pruned_accuracy']:.2f} "
            f"({100 * r['pruned_accuracy_before']:.2f}) | {100 * g['accuracy']:.2f} ({100 * g['accuracy_before']:.2f})"
            f" | {r['resource_from_shapes']:.0f} = {r['solver']['resource']:.0f} <= {r['budget']:.0f}: "
            f"{r['meets_budget']} | {r['solver']['status']} / {100 * (r['solver']['gap'] or 0):.2f} % | "
            f"{r['speedup']:.2f}x | {g['resource_from_shapes']:.0f} | {g['speedup']:.2f}x |"
        )
    s = res.get("summary")
    if s:
        lines += [
            "",
            "## Summary (mean ± std over seeds)",
            "",
            "| | base | ours (B&B) | greedy L1 |",
            "|---|---|---|---|",
            f"| test accuracy (%) | {_pm(s['base_accuracy'], 100)} | {_pm(s['ours_accuracy'], 100)} | "
            f"{_pm(s['greedy_accuracy'], 100)} |",
            f"| before fine-tuning (%) | | {_pm(s['ours_accuracy_before_finetune'], 100)} | "
            f"{_pm(s['greedy_accuracy_before_finetune'], 100)} |",
            f"| drop vs base (points) | | {_pm(s['ours_drop_points'])} | {_pm(s['greedy_drop_points'])} |",
            f"| FLOPs / full (prunable convs) | 1 | {_pm(s['ours_flops_fraction'], 1, 4)} | "
            f"{_pm(s['greedy_flops_fraction'], 1, 4)} |",
            f"| onnxruntime speed-up | 1 | {_pm(s['ours_speedup'])} | {_pm(s['greedy_speedup'])} |",
            f"| B&B gap (%) | | {_pm(s['bnb_gap'], 100)} | |",
        ]
    if res["runs"]:
        lines += ["", "Kept channels per map (map 0 = input; maps 2, 4, ... are the block-internal maps):", ""]
        for r in res["runs"]:
            lines.append(
                f"- seed {r['config']['seed']}: ours {r['kept_per_map']}; greedy {r['greedy']['kept_per_map']}"
            )
        slow = [r for r in res["runs"] if r["solver"]["seconds"] > 1.5 * (r["config"]["time_limit"] or np.inf)]
        if slow:
            took = ", ".join(f"{r['solver']['seconds']:.0f} s" for r in slow)
            lines.append(
                f"- B&B overran its {res['config']['time_limit']} s time limit on seeds "
                f"{[r['config']['seed'] for r in slow]} ({took}): the root heuristics (greedy + local search) are "
                "not bounded by the limit (reported to the lead)."
            )
        if s and s["ours_accuracy"][0] < s["greedy_accuracy"][0]:
            thin = [min(r["kept_per_map"][2 : 2 * 3 + 2 : 2]) for r in res["runs"]]
            lines += [
                "",
                "**Ours is below the greedy baseline after fine-tuning.** The exact optimum of the per-layer "
                "normalised L1 objective under a FLOPs budget spends the budget where FLOPs are cheap (the 8x8 and "
                "16x16 stages) and cuts the block-internal maps of the 32x32 stage to "
                f"{thin} channel(s) (per seed), a bottleneck that one fine-tuning epoch does not undo; the greedy "
                "baseline keeps a uniform ratio. Both selections meet the same budget (the greedy one with exact "
                "bookkeeping); before fine-tuning both are at chance.",
            ]
    lat = res.get("latency")
    if lat:
        lines += [
            "",
            "## Latency model",
            "",
            f"Per-layer grids in tile units of {lat['tile']} channels ({lat['grid_points']} timed points over "
            f"{lat['n_groups']} distinct conv shapes; fit {lat['fit_seconds']:.0f} s), fixed part "
            f"{lat['fixed_ms']:.2f} ms, mean per-layer fit MPE {lat['layer_mpe_mean']:.1f} %.",
            "",
            f"- Random pruned networks ({lat['random']['n']}): end-to-end MAPE **{lat['random']['mape']:.2f} %** "
            f"(max {lat['random']['max_ape']:.2f} %).",
        ]
        lc = lat.get("constrained")
        if lc:
            lines.append(
                f"- Latency-constrained pruning (ratio {lc['ratio']}, groups of {lat['tile']}): predicted "
                f"{lc['predicted_ms']:.2f} ms vs measured {lc['measured_ms']:.2f} ms (APE {lc['ape']:.2f} %); "
                f"base measured {lc['base_ms']:.2f} ms, speed-up {lc['speedup']:.2f}x; B&B {lc['status']} gap "
                f"{100 * (lc['gap'] or 0):.2f} %; accuracy {100 * lc['accuracy']:.2f} % (base "
                f"{100 * lc['base_accuracy']:.2f} %)."
            )
            lines.append(f"- All latency networks together (random + constrained): MAPE **{lat['all_mape']:.2f} %**.")
            if lc["ape"] > 10.0:
                lines.append(
                    "- The constrained network is the outlier: it is faster than predicted. Physical pruning places "
                    "surviving channels of a residual add with constant 0/1 1x1 convs whenever they are not a prefix "
                    "of the stream, and that cost depends on the channel *positions*, which the per-conv model "
                    "(counts only) cannot see; the fixed part is calibrated on random networks, which scatter their "
                    "channels, while the B&B network keeps aligned groups and needs fewer placements (a likely "
                    "cause, not verified by a separate measurement)."
                )
    for prev in res.get("latency_previous_runs", []):
        lines.append(
            f"- Earlier run of the latency stages (same code path, other load on the machine): MAPE "
            f"{prev['all_mape']:.2f} % (random networks {prev['random']['mape']:.2f} %); the latency stages were "
            "re-run with `--latency-only`."
        )
    lines += ["", "## Targets", "", "| target | result | met |", "|---|---|---|"]
    for t in res.get("targets", []):
        lines.append(f"| {t['target']} | {t['result']} | {'yes' if t['met'] else 'no'} |")
    lines.append("")
    lines.append(f"Total wall time {res.get('seconds', 0) / 60:.1f} min.")
    return "\n".join(lines) + "\n"


def targets(res: dict) -> list:
    out = []
    s = res.get("summary")
    if s:
        worst = max(100 * (r["base_accuracy"] - r["pruned_accuracy"]) for r in res["runs"])
        out.append({"target": "pruned FLOPs from shapes == solver resource <= budget (every seed)",
                    "result": str(s["all_meet_budget_exactly"]), "met": bool(s["all_meet_budget_exactly"])})  # fmt: skip
        out.append({"target": "ours within 1 point of base after fine-tuning (every seed)",
                    "result": f"worst drop {worst:.2f} points (mean {s['ours_drop_points'][0]:.2f})",
                    "met": bool(worst <= 1.0)})  # fmt: skip
        out.append({"target": "greedy baseline reported over 3 seeds", "result": f"{len(res['runs'])} seeds",
                    "met": len(res["runs"]) >= 3})  # fmt: skip
        out.append({"target": "onnxruntime speed-up of the pruned network reported",
                    "result": f"{s['ours_speedup'][0]:.2f}x", "met": True})  # fmt: skip
    lat = res.get("latency")
    if lat:
        out.append({"target": "latency model end-to-end MAPE <= 10 % (random + constrained networks)",
                    "result": f"{lat['all_mape']:.2f} %", "met": bool(lat["all_mape"] <= 10.0)})  # fmt: skip
        lc = lat.get("constrained")
        if lc:
            out.append({"target": "(stricter) the latency-constrained B&B network alone: APE <= 10 %",
                        "result": f"{lc['ape']:.2f} %", "met": bool(lc["ape"] <= 10.0)})  # fmt: skip
    return out


def latency_section(res: dict, t0: float):
    """Fit the latency model of the architecture and check it on random pruned networks."""
    print(f"[{time.perf_counter() - t0:7.0f} s] latency model", flush=True)
    model = build_model(CONFIG.model, CONFIG.width)
    shape = (32, 32, 1) if CONFIG.data == "mnist5k" else (8, 8, 1)
    lm = fit_latency_model(model, shape, tile=CONFIG.tile, batch_size=CONFIG.latency_batch,
                           threads=CONFIG.latency_threads, runs=CONFIG.latency_runs)  # fmt: skip
    val = validate_latency_model(
        lm, model, None, shape, n_networks=N_RANDOM, runs=CONFIG.latency_runs, tile=CONFIG.tile
    )
    from combax.models.resnet import conv_layout

    lay = conv_layout(model, shape)
    n_groups = len({(c.c_in, c.c_out, c.k, c.stride, c.h_in, c.src == 0) for c in lay})
    res["latency"] = {
        "tile": CONFIG.tile,
        "batch_size": lm.batch_size,
        "threads": lm.threads,
        "statistic": lm.statistic,
        "n_groups": n_groups,
        "grid_points": None,
        "fit_seconds": lm.seconds,
        "fixed_ms": lm.fixed,
        "layer_mpe_mean": float(np.mean(lm.layer_mpe)),
        "layer_r2": [float(x) for x in lm.layer_r2],
        "coef": np.asarray(lm.coef).tolist(),
        "random": {
            "n": N_RANDOM,
            "mape": val.mape,
            "max_ape": val.max_ape,
            "predicted_ms": val.predicted_ms.tolist(),
            "measured_ms": val.measured_ms.tolist(),
        },  # fmt: skip
        "all_mape": val.mape,
    }
    from combax.adapters.latency_model import _grid

    pts = 0
    for sig in {(c.c_in, c.c_out, c.k, c.stride, c.h_in, c.src == 0): c for c in lay}.values():
        gin = 1 if sig.src == 0 else _grid(sig.c_in, 4, CONFIG.tile).size
        pts += gin * _grid(sig.c_out, 4, CONFIG.tile).size
    res["latency"]["grid_points"] = pts
    res["targets"] = targets(res)
    res["seconds"] = time.perf_counter() - t0
    write(res)
    print(f"  random networks MAPE {val.mape:.2f} %", flush=True)
    return lm, model, shape, val


def latency_constrained(res, lm, model, shape, val, t0):
    """Latency-constrained pruning of the seed-0 base with the fitted model; predicted vs measured."""
    print(f"[{time.perf_counter() - t0:7.0f} s] latency-constrained pruning", flush=True)
    from combax.adapters.pruning import channel_problem
    from combax.models.classifier_train import init_variables

    # the ratio applies to the whole predicted time (fixed part included): keep it above the smallest network's
    prob = channel_problem(model, init_variables(model, shape), "latency", 1.0, input_shape=shape, latency_model=lm,
                           group_size=CONFIG.tile)  # fmt: skip
    floor = (prob.min_resource + lm.fixed) / (prob.full_resource + lm.fixed)
    ratio = float(max(LATENCY_RATIO, round(floor + 0.5 * (1 - floor), 2)))
    cfg = dataclasses.replace(CONFIG, seed=0, resource="latency", ratio=ratio, baseline=False,
                              checkpoint=str(CACHE / f"{NAME}_base_seed0.npz"))  # fmt: skip
    rep = run_prune(cfg, latency_model=lm)
    ape = 100 * abs(rep.predicted_latency_ms - rep.pruned_latency_ms) / rep.pruned_latency_ms
    both = latency_validation(list(val.predicted_ms) + [rep.predicted_latency_ms],
                              list(val.measured_ms) + [rep.pruned_latency_ms])  # fmt: skip
    res["latency"]["constrained"] = {
        "ratio": ratio,
        "smallest_network_ratio": floor,
        "predicted_ms": rep.predicted_latency_ms,
        "measured_ms": rep.pruned_latency_ms,
        "ape": ape,
        "base_ms": rep.base_latency_ms,
        "base_predicted_ms": lm.predict(model, shape),
        "speedup": rep.speedup,
        "status": rep.solver["status"],
        "gap": rep.solver["gap"],
        "budget_ms": rep.budget,
        "solver_resource_ms": rep.solver["resource"],
        "accuracy": rep.pruned_accuracy,
        "accuracy_before_finetune": rep.pruned_accuracy_before,
        "base_accuracy": rep.base_accuracy,
        "kept_per_map": list(rep.kept_per_map),
    }
    res["latency"]["all_mape"] = both.mape
    res["targets"] = targets(res)
    res["seconds"] = time.perf_counter() - t0
    write(res)


def main() -> None:
    t0 = time.perf_counter()
    CACHE.mkdir(parents=True, exist_ok=True)
    res = {
        "config": dataclasses.asdict(CONFIG),
        "seeds": list(SEEDS),
        "seeds_done": [],
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}",
        "runs": [],
    }
    lm, model, shape, val = latency_section(res, t0)

    for seed in SEEDS:
        cfg = dataclasses.replace(CONFIG, seed=seed, checkpoint=str(CACHE / f"{NAME}_base_seed{seed}.npz"))
        print(f"[{time.perf_counter() - t0:7.0f} s] seed {seed}", flush=True)
        rep = run_prune(cfg)
        res["runs"].append(rep.to_dict())
        res["seeds_done"].append(seed)
        res["summary"] = summarise(res["runs"])
        res["targets"] = targets(res)
        res["seconds"] = time.perf_counter() - t0
        write(res)
        r = res["runs"][-1]
        print(f"  base {r['base_accuracy']:.4f} ours {r['pruned_accuracy']:.4f} greedy {r['greedy']['accuracy']:.4f}"
              f" meets {r['meets_budget']} speed-up {r['speedup']:.2f}", flush=True)  # fmt: skip
        if seed == SEEDS[0]:
            latency_constrained(res, lm, model, shape, val, t0)

    res["seconds"] = time.perf_counter() - t0
    write(res)
    print(f"done in {res['seconds'] / 60:.1f} min; latency MAPE {res['latency']['all_mape']:.2f} %", flush=True)


def latency_only() -> None:
    """Re-run only the latency stages into the existing results (``--latency-only``), e.g. on a quieter machine.

    The previous latency numbers are kept under ``latency_previous_runs``; the seed-0 base comes from the cache.
    """
    t0 = time.perf_counter()
    res = json.loads((OUT / f"{NAME}.json").read_text())
    if "latency" in res:
        res.setdefault("latency_previous_runs", []).append(res.pop("latency"))
    seconds = res.get("seconds", 0.0)
    lm, model, shape, val = latency_section(res, t0)
    latency_constrained(res, lm, model, shape, val, t0)
    res["seconds"] = seconds
    res["latency_rerun_seconds"] = time.perf_counter() - t0
    write(res)
    print(f"latency re-run in {res['latency_rerun_seconds'] / 60:.1f} min; MAPE {res['latency']['all_mape']:.2f} %")


if __name__ == "__main__":
    latency_only() if "--latency-only" in sys.argv else main()
