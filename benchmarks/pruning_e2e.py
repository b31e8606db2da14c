"""Channel pruning end to end (issue 7): ResNet-20 on MNIST-5k (padded to 32x32) at 50 % FLOPs, 3 seeds.

Per seed: the base network is trained; then ours (B&B channel selection of the discrete QCQP, physically pruned,
fine-tuned) and the greedy L1-filter baseline (PFEC-style, uniform ratio, exact bookkeeping so it meets the same
budget) at the same FLOPs target, both fine-tuned the same way. Reported: test accuracy of base / ours / greedy,
that the pruned network meets the budget exactly (FLOPs recomputed from the kernel shapes equal the solver's
resource and are <= the budget), B&B status and gap, and the measured onnxruntime speed-up.

Then the latency model: every distinct conv shape of ResNet-20 timed over a grid of (n_in, n_out) in tile units of
8 channels, the quadratic fitted by least squares, and its end-to-end error on random pruned networks; and a
latency-constrained pruning (50 % of the predicted latency) of the seed-0 base network, predicted vs measured.

The importance normalisation (``CONFIG.normalisation``) is chosen beforehand on a validation split carved from the
training split (``--validation-study [--seeds=0,1]``, recorded in the JSON under ``validation_study`` and kept by
later full runs), never on the test split.

Writes benchmarks/results/pruning_e2e.json and .md (after every stage, so an interrupted run leaves partial
results). Run from the repository root: ``python benchmarks/pruning_e2e.py`` (about 40-50 minutes on 2 shared cores;
base networks are cached under ``PRUNING_E2E_CACHE``, named after their recipe). Set ``PRUNING_E2E_QUICK=1`` for a
smoke run (ResNet-8 on digits).
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
    normalisation="sum",  # chosen on the validation split (--validation-study): smaller mean drop than frobenius
    epochs=1 if QUICK else 4,
    lr=0.1,
    finetune_epochs=1 if QUICK else 3,
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
LATENCY_FINETUNE_EPOCHS = 1  # the latency-constrained network's accuracy is informational: one epoch saves time
OUT = ROOT / "benchmarks" / "results"
CACHE = Path(os.environ.get("PRUNING_E2E_CACHE", "/tmp/combax_pruning_e2e"))
NAME = "pruning_e2e_quick" if QUICK else "pruning_e2e"


def _base_name(seed: int) -> str:
    """Cache file of a base network: named after the recipe, so another recipe never loads it."""
    return f"{NAME}_base_seed{seed}_e{CONFIG.epochs}_lr{CONFIG.lr}_b{CONFIG.batch_size}.msgpack"


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
    if all("base_continued_accuracy" in r for r in runs):
        s["base_continued_accuracy"] = _mean_std([r["base_continued_accuracy"] for r in runs])
        for who, get in (("ours", lambda r: r["pruned_accuracy"]), ("greedy", lambda r: r["greedy"]["accuracy"])):
            s[f"{who}_drop_vs_continued_points"] = _mean_std(
                [100 * (r["base_continued_accuracy"] - get(r)) for r in runs]
            )
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
        f"stratified 80/20 split; FLOPs ratio {c['ratio']}; seeds {list(res['seeds_done'])}. Importance: per-kernel "
        f"L1, per-layer normalisation `{c.get('normalisation', 'frobenius')}` (chosen on a validation split, see "
        f"below). Base: {c['epochs']} "
        f"epochs SGD-Nesterov lr {c['lr']} cosine, batch {c['batch_size']}; fine-tuning {c['finetune_epochs']} "
        f"epochs lr {c['finetune_lr']} (ours and greedy alike). B&B time limit {c['time_limit']} s. Latency: "
        f"onnxruntime CPU, batch {c['latency_batch']}, {c['latency_threads']} thread(s), median of "
        f"{c['latency_runs']} runs.",
        "",
        f"Machine: {res['machine']}. **Shared with other jobs while this ran (load average above the core "
        "count): wall times and latencies are noisy, and the epoch counts are small to fit the time budget.**",
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
        if "base_continued_accuracy" in s:
            lines += [
                f"| base trained on with the fine-tuning recipe, unpruned (%) | "
                f"{_pm(s['base_continued_accuracy'], 100)} | | |",
                f"| drop vs that network (points) | | {_pm(s['ours_drop_vs_continued_points'])} | "
                f"{_pm(s['greedy_drop_vs_continued_points'])} |",
                "",
                "The base networks are short-trained, so fine-tuning also trains: the last two rows compare against "
                "the unpruned base trained on for the same fine-tuning epochs at the same learning rate "
                "(`--base-continued`), which isolates what pruning costs.",
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
        thin = [min(r["kept_per_map"][2 : 2 * 3 + 2 : 2]) for r in res["runs"]]
        if s and s["ours_accuracy"][0] < s["greedy_accuracy"][0]:
            lines += [
                "",
                f"**Ours is below the greedy baseline after fine-tuning** by "
                f"{100 * (s['greedy_accuracy'][0] - s['ours_accuracy'][0]):.2f} points on the mean (seed std "
                f"{100 * s['ours_accuracy'][1]:.2f} / {100 * s['greedy_accuracy'][1]:.2f}; normalisation "
                f"`{c.get('normalisation', 'frobenius')}`). The narrowest block-internal map of the 32x32 stage keeps "
                f"{thin} channel(s) (per seed); the greedy baseline keeps a uniform ratio. Both selections meet the "
                "same budget (the greedy one with exact bookkeeping).",
            ]
        if c.get("normalisation", "frobenius") == "frobenius" and min(thin) <= 2:
            lines += [
                "",
                "With the paper's Frobenius normalisation a layer's total importance is about sqrt(C_out C_in) when "
                "its kernel norms are nearly uniform (a briefly trained network), so the 64-channel stage weighs "
                "about four times the 16-channel stage per FLOP and the exact optimum thins the 32x32 stage's "
                "block-internal maps to one or two channels.",
            ]
    lines += _study_lines(res)
    lines += _earlier_lines(res)
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
                f"{100 * (lc['gap'] or 0):.2f} %; accuracy after {lc.get('finetune_epochs', 1)} fine-tuning epoch(s) "
                f"{100 * lc['accuracy']:.2f} % (base "
                f"{100 * lc['base_accuracy']:.2f} %)."
            )
            lines.append(f"- All latency networks together (random + constrained): MAPE **{lat['all_mape']:.2f} %**.")
            if lc["ape"] > 10.0:
                base_ape = 100 * (lc["base_predicted_ms"] - lc["base_ms"]) / lc["base_ms"]
                lines.append(
                    f"- The constrained network is predicted {lc['ape']:.0f} % too slow; the unpruned base is "
                    f"predicted {base_ape:+.0f} % off in the same run. Placement of residual channels is an unlikely "
                    "main cause: the random networks need 2-8 constant 0/1 1x1 placement convs each (1-5 % of their "
                    "conv multiply-adds; counted offline with the same selections), the base none, and the base is "
                    "over-predicted too. More likely: the per-layer grid and the end-to-end timings run at different "
                    "moments of a changing machine load (the fixed part is calibrated once), plus an error that "
                    "depends on the width profile (the constrained network halves the 32x32 stage, which random "
                    "networks rarely do). Not resolved; timing the grid and the networks interleaved, or on a quiet "
                    "machine, is the next check."
                )
    for prev in res.get("latency_previous_runs", []):
        lines.append(
            f"- Earlier run of the latency stages (same code path, another moment of the machine's load): MAPE "
            f"{prev['all_mape']:.2f} % (random networks {prev['random']['mape']:.2f} %); the latency stages were "
            "re-run with `--latency-only`."
        )
    lines += ["", "## Targets", "", "| target | result | met |", "|---|---|---|"]
    for t in res.get("targets", []):
        lines.append(f"| {t['target']} | {t['result']} | {'yes' if t['met'] else 'no'} |")
    lines.append("")
    extra = (
        f" (+ {res['base_continued_seconds'] / 60:.1f} min for `--base-continued`)"
        if "base_continued_seconds" in res
        else ""
    )
    lines.append(f"Total wall time {res.get('seconds', 0) / 60:.1f} min{extra}.")
    return "\n".join(lines) + "\n"


def _study_lines(res: dict) -> list:
    st = res.get("validation_study")
    if not st:
        return []
    c = st["config"]
    lines = [
        "",
        "## Choice of the normalisation (validation split, not the test split)",
        "",
        f"`--validation-study`: the training split is split again {st['split'].split()[0]} (stratified); base "
        f"{c['epochs']} epochs on the larger part, each selection pruned at FLOPs ratio {c['ratio']} and fine-tuned "
        f"{c['finetune_epochs']} epochs, accuracy on the held-out part. `frobenius` is the paper's normalisation "
        "(unit Frobenius norm per layer), `sum` gives every layer unit total importance.",
        "",
        "| seed | base val acc | selection | FT lr | val acc before FT | val acc after FT | drop (points) | kept per map |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for e in st["seeds"]:
        for k in e["candidates"]:
            lines.append(
                f"| {e['seed']} | {100 * e['base_val_accuracy']:.2f} | {k['selection']} | {k['finetune_lr']} | "
                f"{100 * k['val_accuracy_before']:.2f} | {100 * k['val_accuracy']:.2f} | "
                f"{100 * (e['base_val_accuracy'] - k['val_accuracy']):.2f} | {k['kept_per_map']} |"
            )
    drops = {}
    for e in st["seeds"]:
        for k in e["candidates"]:
            drops.setdefault(k["selection"], []).append(100 * (e["base_val_accuracy"] - k["val_accuracy"]))
    mean = ", ".join(f"`{name}` {np.mean(d):.2f} ± {np.std(d):.2f}" for name, d in drops.items())
    lines += [
        "",
        f"Mean validation drop (points) over {len(st['seeds'])} seed(s): {mean}. Choice rule: use the "
        "normalisation with the smaller mean drop, the paper's on a tie. With 600 validation images one image is "
        "0.17 points, so single-seed differences below about half a point are noise.",
    ]
    return lines


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
        out.append({"target": "ours within 1 point of base after fine-tuning (mean over seeds; std reported)",
                    "result": f"mean drop {s['ours_drop_points'][0]:.2f} ± {s['ours_drop_points'][1]:.2f} points",
                    "met": bool(s["ours_drop_points"][0] <= 1.0)})  # fmt: skip
        if "ours_drop_vs_continued_points" in s:
            d = s["ours_drop_vs_continued_points"]
            w = max(100 * (r["base_continued_accuracy"] - r["pruned_accuracy"]) for r in res["runs"])
            out.append({"target": "(stricter) ours within 1 point of the unpruned base trained on as long (mean)",
                        "result": f"mean drop {d[0]:.2f} ± {d[1]:.2f} points (worst seed {w:.2f})",
                        "met": bool(d[0] <= 1.0)})  # fmt: skip
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
                              finetune_epochs=LATENCY_FINETUNE_EPOCHS,
                              checkpoint=str(CACHE / _base_name(0)))  # fmt: skip
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
        "finetune_epochs": LATENCY_FINETUNE_EPOCHS,
        "accuracy_before_finetune": rep.pruned_accuracy_before,
        "base_accuracy": rep.base_accuracy,
        "kept_per_map": list(rep.kept_per_map),
    }
    res["latency"]["all_mape"] = both.mape
    res["targets"] = targets(res)
    res["seconds"] = time.perf_counter() - t0
    write(res)


def validation_study(seeds=(0,), normalisations=("frobenius", "sum"), finetune_lrs=(None,)) -> None:
    """Choose the importance normalisation (and fine-tuning lr) on a validation split, never on the test split.

    Per seed: the training split of :func:`load_data` is split again 85/15 (stratified); the base network is trained
    on the 85 % with ``CONFIG``'s recipe, each candidate selection (B&B under each normalisation, and the greedy
    baseline) is pruned and fine-tuned on the 85 %, and its accuracy on the 15 % is recorded. Written into the
    results JSON under ``validation_study`` (``--validation-study``; kept by later full runs).
    """
    from combax.adapters import pruning as P
    from combax.adapters.pruning_pipeline import load_data
    from combax.data import stratified_split
    from combax.models.classifier_train import TrainConfig, evaluate, fit
    from combax.solvers import channels

    path = OUT / f"{NAME}.json"
    res = json.loads(path.read_text()) if path.exists() else {"config": dataclasses.asdict(CONFIG), "runs": []}
    study = {"config": dataclasses.asdict(CONFIG), "split": "85/15 of the training split", "seeds": []}
    old = res.get("validation_study")
    if old and old.get("config") == study["config"]:  # same recipe: keep the seeds done before, replace re-runs
        study["seeds"] = [e for e in old["seeds"] if e["seed"] not in seeds]
    shape = (32, 32, 1) if CONFIG.data == "mnist5k" else (8, 8, 1)
    for seed in seeds:
        x_tr, y_tr, _, _ = load_data(CONFIG.data, seed)
        tr, va = stratified_split(y_tr, 0.15, seed=seed + 100)
        xt, yt, xv, yv = x_tr[tr], y_tr[tr], x_tr[va], y_tr[va]
        model = build_model(CONFIG.model, CONFIG.width)
        cfg = TrainConfig(epochs=CONFIG.epochs, batch_size=CONFIG.batch_size, lr=CONFIG.lr, seed=seed)
        t = time.perf_counter()
        v = fit(model, xt, yt, cfg, desc=f"train base (validation study, seed {seed})")
        entry = {"seed": seed, "base_val_accuracy": evaluate(model, v, xv, yv), "base_seconds": time.perf_counter() - t,
                 "candidates": []}  # fmt: skip
        for norm in (*normalisations, "greedy"):
            if norm == "greedy":
                sel = P.greedy_l1(model, v, CONFIG.ratio, "flops", bookkeeping="exact", input_shape=shape)
            else:
                prob = P.channel_problem(model, v, "flops", CONFIG.ratio, input_shape=shape, normalisation=norm)
                sel = channels.solve(prob, "bnb", time_limit=CONFIG.time_limit)
            pr = P.prune(model, v, sel, input_shape=shape)
            before = evaluate(pr.model, pr.variables, xv, yv)
            for lr in finetune_lrs:
                lr = CONFIG.finetune_lr if lr is None else lr
                t = time.perf_counter()
                ft_cfg = TrainConfig(epochs=CONFIG.finetune_epochs, batch_size=CONFIG.batch_size, lr=lr,
                                     warmup_steps=0, seed=seed)  # fmt: skip
                ft = P.finetune(pr, xt, yt, ft_cfg, desc=f"fine-tune {norm}")
                c = {"selection": norm, "finetune_lr": lr, "val_accuracy_before": before,
                     "val_accuracy": evaluate(ft.model, ft.variables, xv, yv), "flops": pr.resource["flops"],
                     "kept_per_map": [int(k.sum()) for k in sel.keep], "finetune_seconds": time.perf_counter() - t}  # fmt: skip
                entry["candidates"].append(c)
                print(f"  seed {seed} {norm:9s} lr {lr}: val {c['val_accuracy']:.4f} (base "
                      f"{entry['base_val_accuracy']:.4f}) kept {c['kept_per_map']}", flush=True)  # fmt: skip
        study["seeds"].append(entry)
        study["seeds"].sort(key=lambda e: e["seed"])
        res["validation_study"] = study
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(res, indent=2))


def base_continued() -> None:
    """Train each cached base network on with the fine-tuning recipe, unpruned (``--base-continued``).

    The accuracy of ``base + finetune_epochs`` more epochs at ``finetune_lr`` is what the pruned networks would be
    compared with if pruning cost nothing; it is added to every run of the results JSON as
    ``base_continued_accuracy`` (test split, like the other accuracies; it chooses nothing).
    """
    from combax.adapters.pruning_pipeline import load_checkpoint, load_data
    from combax.models.classifier_train import TrainConfig, evaluate, fit

    res = json.loads((OUT / f"{NAME}.json").read_text())
    t0 = time.perf_counter()
    for r in res["runs"]:
        seed = r["config"]["seed"]
        x_tr, y_tr, x_te, y_te = load_data(CONFIG.data, seed)
        model = build_model(CONFIG.model, CONFIG.width)
        variables, meta = load_checkpoint(CACHE / _base_name(seed))
        assert meta["seed"] == seed and meta["epochs"] == r["config"]["epochs"], meta
        cfg = TrainConfig(epochs=CONFIG.finetune_epochs, batch_size=CONFIG.batch_size, lr=CONFIG.finetune_lr,
                          warmup_steps=0, seed=seed)  # fmt: skip
        tuned = fit(model, x_tr, y_tr, cfg, variables=variables, desc=f"train base on (seed {seed})")
        r["base_continued_accuracy"] = evaluate(model, tuned, x_te, y_te)
        print(
            f"  seed {seed}: base {r['base_accuracy']:.4f}, trained on {r['base_continued_accuracy']:.4f}", flush=True
        )
    res["summary"] = summarise(res["runs"])
    res["targets"] = targets(res)
    res["base_continued_seconds"] = time.perf_counter() - t0
    write(res)


def _earlier(old: dict) -> dict:
    """The headline numbers of a finished run of another recipe (kept in ``earlier_runs``)."""
    keys = ("base_accuracy", "ours_accuracy", "greedy_accuracy", "ours_drop_points", "greedy_drop_points",
            "base_continued_accuracy", "ours_drop_vs_continued_points", "ours_speedup", "greedy_speedup", "bnb_gap")  # fmt: skip
    out = {"config": old["config"], "seeds": old.get("seeds_done"), "seconds": old.get("seconds"),
           "summary": {k: old["summary"][k] for k in keys if k in old["summary"]}}  # fmt: skip
    lat = old.get("latency") or {}
    if lat.get("constrained"):
        out["latency"] = {"random_mape": lat["random"]["mape"], "all_mape": lat["all_mape"],
                          "constrained_ape": lat["constrained"]["ape"],
                          "base_ape": 100 * abs(lat["constrained"]["base_predicted_ms"] - lat["constrained"]["base_ms"])
                          / lat["constrained"]["base_ms"]}  # fmt: skip
    return out


def _earlier_lines(res: dict) -> list:
    lines = []
    for e in res.get("earlier_runs", []):
        c, s = e["config"], e["summary"]
        row = (f"- Base {c['epochs']} epochs, fine-tuning {c['finetune_epochs']} epochs lr {c['finetune_lr']}, "
               f"normalisation `{c.get('normalisation', 'frobenius')}`, seeds {e['seeds']}: base "
               f"{_pm(s['base_accuracy'], 100)} %, ours {_pm(s['ours_accuracy'], 100)} % (drop "
               f"{_pm(s['ours_drop_points'])}), greedy {_pm(s['greedy_accuracy'], 100)} % (drop "
               f"{_pm(s['greedy_drop_points'])})")  # fmt: skip
        if "base_continued_accuracy" in s:
            row += (f"; unpruned base trained on as long {_pm(s['base_continued_accuracy'], 100)} % (ours' drop vs it "
                    f"{_pm(s['ours_drop_vs_continued_points'])})")  # fmt: skip
        row += f"; speed-up ours {_pm(s['ours_speedup'])}x, greedy {_pm(s['greedy_speedup'])}x"
        if e.get("latency"):
            la = e["latency"]
            row += (f"; latency model MAPE {la['all_mape']:.2f} % (random networks {la['random_mape']:.2f} %, "
                    f"latency-constrained network {la['constrained_ape']:.2f} %, unpruned base "
                    f"{la['base_ape']:.2f} %)")  # fmt: skip
        lines.append(row + ".")
    note = (
        "Where an earlier run missed on the latency-constrained network, the unpruned base was mispredicted in the "
        "same run too, so the likelier cause is load on the shared machine drifting between the per-layer grid "
        "timings and the end-to-end timings (minutes apart) rather than the network's structure: the 0/1 placement "
        "convs of residual adds are 2-8 small 1x1 convs in the random networks (1-5 % of their multiply-adds; counted "
        "offline with the same selections) and none in the base. Compare the current run's latency section above."
    )
    return (
        ["", "## Earlier runs of this benchmark (other recipes, other machine load)", "", *lines, "", note]
        if lines
        else []
    )


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
    previous = OUT / f"{NAME}.json"
    if previous.exists():  # the validation study that chose the normalisation (--validation-study) is kept
        old = json.loads(previous.read_text())
        if old.get("validation_study"):
            res["validation_study"] = old["validation_study"]
        res["earlier_runs"] = old.get("earlier_runs", [])
        if old.get("summary") and old.get("config") != res["config"]:  # a finished run of another recipe: summarised
            res["earlier_runs"].append(_earlier(old))
    lm, model, shape, val = latency_section(res, t0)

    for seed in SEEDS:
        cfg = dataclasses.replace(CONFIG, seed=seed, checkpoint=str(CACHE / _base_name(seed)))
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
    if "--latency-only" in sys.argv:
        latency_only()
    elif "--base-continued" in sys.argv:
        base_continued()
    elif "--validation-study" in sys.argv:
        picked = [a.split("=", 1)[1] for a in sys.argv if a.startswith("--seeds=")]
        validation_study(tuple(int(x) for x in picked[0].split(",")) if picked else (0,))
    else:
        main()
