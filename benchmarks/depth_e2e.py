"""Depth compression end to end (issue 6): MobileNetV2-0.5 on MNIST-5k (padded to 32x32), the whole pipeline.

One process, one call of :func:`combax.adapters.depth_pipeline.run_compress`: train the base network, measure the
onnxruntime latency table (171 blocks) and the importance table (315 proxy entries on the val split), solve the
exact Pareto front, and for each budget fine-tune the DP's (A, S) from the base weights, merge it into a shallow
network (merged == unmerged checked on the test split), export it to ONNX, and time it end to end beside the base
network (BN folded, exported the same way) with the same backend, batch and threads, interleaved over rounds. The
DepthShrinker-style baseline (whole inverted-residual blocks merged, ReLU6 at the block end, blocks chosen greedily
by their measured saving until the predicted latency matches the DP's) is fine-tuned, merged, timed and evaluated
the same way.

Writes benchmarks/results/depth_e2e.json, .md and .png. Run from the repository root:
``python benchmarks/depth_e2e.py`` (under 30 minutes on 2 shared cores). The pipeline's checkpoint, tables and ONNX
files go to ``$DEPTH_E2E_CACHE`` (default /tmp/combax_depth_e2e); delete it for a run from scratch.
"""

import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from combax.adapters.depth_pipeline import CompressConfig, markdown, plot_report, run_compress  # noqa: E402
from combax.models.classifier_train import TrainConfig  # noqa: E402

CONFIG = CompressConfig(
    model="mobilenetv2",
    width=0.5,
    data="mnist5k",
    hw=32,
    # stem stride 2: the stack sees 16x16 maps. With stride 1 one training epoch took ~310 s on this shared machine
    # (vs ~100 s), which does not fit base training + 4 fine-tunes in the 30-minute budget.
    stem_stride=2,
    budgets=(0.55, 0.4),
    budget_unit="fraction",
    # lr 0.03 converged faster than 0.1 and 0.25 in 2-epoch trials on this network (val split); see the .md
    train=TrainConfig(epochs=5, batch_size=64, lr=0.03, weight_decay=1e-5, warmup_steps=30, seed=0),
    finetune=TrainConfig(epochs=2, batch_size=64, lr=0.01, weight_decay=1e-5, warmup_steps=0, seed=0),
    val_fraction=0.06,
    test_fraction=0.2,
    table_batch=8,
    table_warmup=5,
    table_runs=20,
    timing_batch=8,
    timing_warmup=10,
    timing_runs=40,
    timing_rounds=7,
    threads=1,
    backend="onnxruntime",
    importance_method="proxy",
    importance_score="accuracy",
    alpha=0.0,
    baseline=True,
    control=False,  # run after the pipeline instead (outside its timed 30 minutes): see control()
    seed=0,
    out=os.environ.get("DEPTH_E2E_CACHE", "/tmp/combax_depth_e2e"),
    progress=True,
)
OUT = ROOT / "benchmarks" / "results"
NAME = "depth_e2e"
LIMIT_MIN = 30.0


def targets(d: dict, wall_s: float) -> list:
    nets = [d["base"]] + [r[k] for r in d["runs"] for k in ("dp", "baseline") if r[k] is not None]
    worst32 = max(n["merged_max_abs_diff"] for n in nets)
    worst64 = max(n["merged_max_abs_diff_f64"] for n in nets)
    rel32 = max(n["merged_max_rel_diff"] for n in nets)
    timed = all(n["latency_ms"] and n["latency_ms"] > 0 and n["onnx"] for n in nets)
    out = [
        {"target": "merged == unmerged to 1e-4 (max abs logit difference on test images, both in float64 "
                   "arithmetic, merged weights as exported in float32); every network exported to ONNX and timed",
         "result": f"worst {worst64:.1e} over {len(nets)} networks; exported and timed: {timed}",
         "met": bool(worst64 <= 1e-4 and timed)},
        {"target": "(stricter) the same in float32 arithmetic, on all 1000 test images",
         "result": f"worst {worst32:.1e} (relative to the largest logit {rel32:.1e})", "met": bool(worst32 <= 1e-4)},
    ]  # fmt: skip

    def speed(r):  # the conservative one of the wall-clock and CPU-time speed-ups
        return min(r["dp"]["speedup"], r["dp"]["speedup_cpu"])

    good = [r for r in d["runs"] if speed(r) >= 1.5 and r["dp"]["drop_points"] <= 1.0]
    out.append({
        "target": "some budget: measured onnxruntime end-to-end speed-up >= 1.5x (wall clock and CPU time both) with "
                  "accuracy drop <= 1.0 point vs the base network",
        "result": "; ".join(f"{r['budget']:g}: {r['dp']['speedup']:.2f}x wall / {r['dp']['speedup_cpu']:.2f}x CPU, "
                            f"drop {r['dp']['drop_points']:+.2f} pt" for r in d["runs"]),
        "met": bool(good),
    })  # fmt: skip
    matched = [r for r in d["runs"] if r["baseline"] is not None and r["baseline"]["matched"]]
    wins = [r for r in matched if r["dp"]["accuracy"] > r["baseline"]["accuracy"]]
    out.append({
        "target": "DP beats the DepthShrinker-style baseline in test accuracy at matched latency (every budget)",
        "result": "; ".join(f"{r['budget']:g}: {100 * r['dp']['accuracy']:.2f} vs "
                            f"{100 * r['baseline']['accuracy']:.2f} % (speed-up {r['dp']['speedup']:.2f}x vs "
                            f"{r['baseline']['speedup']:.2f}x)" for r in matched)
                  + f" ({len(wins)}/{len(matched)} wins)",
        "met": bool(matched) and len(wins) == len(matched),
    })  # fmt: skip
    out.append({"target": f"whole pipeline under {LIMIT_MIN:g} minutes (one process, 2 shared cores)",
                "result": f"{wall_s / 60:.1f} min", "met": wall_s / 60 < LIMIT_MIN})  # fmt: skip
    return out


def notes(res: dict) -> list:
    """Caveats computed from the results (so a re-run states its own)."""
    d = res["report"]
    b = d["base"]
    n_test = d["network"]["n_test"]
    se = 100 * (b["accuracy"] * (1 - b["accuracy"]) / n_test) ** 0.5
    out = [
        f"The base network reaches only {100 * b['accuracy']:.2f} % on MNIST-5k ({d['config']['train']['epochs']} "
        f"epochs, lr {d['config']['train']['lr']}). MobileNetV2-0.5 trains slowly here and the time budget allows "
        "few epochs; the drops are relative to this base. The lr was picked from short trials judged on the val "
        "split (2 epochs: lr 0.03 -> 84.6 % val, lr 0.25 -> 34.8 %; 4 epochs at lr 0.1, batch 128 -> 89.4 %; the "
        "aborted first attempt, 5 epochs at lr 0.1 -> 89.0 % val).",
        f"One seed, {n_test} test images: the standard error of an accuracy near the base is about {se:.1f} "
        "points, so drops within about 1 point are within noise; the DP-vs-baseline gaps are several standard errors.",
    ]
    for r in d["runs"]:
        bl = r["baseline"]
        if bl is None:
            continue
        rel = 100 * (bl["speedup"] / r["dp"]["speedup"] - 1)
        out.append(
            f'Budget {r["budget"]:g}: "matched latency" is the predicted stack latency (the baseline\'s '
            f"{bl['predicted_latency_ms']:.3f} ms <= the DP's {r['dp']['predicted_latency_ms']:.3f} ms, the greedy rule "
            f"cannot land exactly on it); measured end to end the baseline is {rel:+.1f} % faster than the DP choice, "
            f"and {100 * (r['dp']['accuracy'] - bl['accuracy']):.1f} points less accurate."
        )
    out += [
        f"The table's base stack latency ({b['stack_latency_ms']:.3f} ms: the sum of 50 single-conv entries, each "
        f"timed alone with its own session) exceeds the measured end-to-end base latency ({b['latency_ms']:.3f} ms, "
        "stem and head included): per-session overheads do not add up inside one graph. Budgets are fractions of the "
        "table's stack latency; the measured speed-ups are end to end.",
        "Speed-ups are reported twice, from wall-clock and from process CPU time (the CPU time does not count waiting "
        "for a core); the target needs both. In a probe during a heavier-load period the base measured 12.6 ms "
        "wall clock, against about 2.6 ms (wall and CPU alike) minutes later: under contention the wall clock of a "
        "longer graph can grow super-linearly and inflate speed-ups, hence the CPU-time column.",
        "An earlier attempt (lr 0.1, three budgets, one fine-tuning epoch) was stopped after its importance table: "
        "its base reached 87.8 % and it would not have finished in 30 minutes under the load of that moment.",
    ]
    return out


def bench_markdown(res: dict) -> str:
    d = res["report"]
    lines = [
        markdown(d, title=f"{NAME}: depth compression end to end (issue 6)").rstrip(),
        "",
        f"Machine: {res['machine']}; load average {res['load_before']} at the start, {res['load_after']} at the "
        "end. **The 2 cores were shared with other jobs while this ran: wall times and latencies are noisy.** "
        "Latencies are medians of interleaved rounds (base and compressed networks alternate in a shuffled order "
        "in every round), so load affects them alike.",
        "",
        "Setting notes: the MobileNetV2 stem has stride 2 (the stack sees 16x16 maps) so that base training and four "
        "fine-tunes fit the 30-minute budget on this machine; the latency table is measured with the same "
        "onnxruntime setting (1 thread, batch 8) as the end-to-end timing. Importance is the no-fine-tune proxy "
        "(act_mask), scored on the val split; every accuracy is on the held-out test split, which no choice was "
        "tuned on.",
        "",
        "## Targets",
        "",
        "| target | result | met |",
        "|---|---|---|",
    ]
    for t in res["targets"]:
        lines.append(f"| {t['target']} | {t['result']} | {'yes' if t['met'] else '**no**'} |")
    c = res.get("control")
    if c:
        lines += [
            "",
            "## Control (run after the pipeline, not part of its wall time)",
            "",
            f"The uncompressed base network fine-tuned with the same steps as every compressed network: test "
            f"accuracy {100 * c['finetuned_base_accuracy']:.2f} % (base {100 * d['base']['accuracy']:.2f} %). Drops "
            "against it (points): DP "
            + ", ".join(f"{k}: {v:+.2f}" for k, v in c["dp_drops_vs_finetuned_base"].items())
            + "; baseline "
            + ", ".join(f"{k}: {v:+.2f}" for k, v in c["baseline_drops_vs_finetuned_base"].items())
            + ".",
        ]
    lines += ["", "## Notes and caveats", ""] + [f"- {n}" for n in notes(res)]
    lines += ["", f"Pipeline wall time {res['seconds'] / 60:.1f} min.", ""]
    return "\n".join(lines)


def control(d: dict) -> dict:
    """The uncompressed base network fine-tuned with the same steps as every compressed one (after the pipeline).

    Fine-tuning continues training, so a compressed network may gain accuracy the base would gain too; this control
    says how much.
    """
    from combax.adapters.depth_pipeline import build_spec, load_checkpoint, load_data
    from combax.models.chain import ChainNet
    from combax.models.classifier_train import evaluate, fit

    t = time.perf_counter()
    x_tr, y_tr, x_va, y_va, x_te, y_te = load_data(CONFIG)
    model = ChainNet(build_spec(CONFIG, 10, 1))
    variables, _ = load_checkpoint(Path(CONFIG.out) / "base.msgpack")
    tuned = fit(model, x_tr, y_tr, CONFIG.finetune, variables=variables, desc="control: fine-tune the base")
    acc = evaluate(model, tuned, x_te, y_te)
    out = {"finetuned_base_accuracy": acc, "finetuned_base_val_accuracy": evaluate(model, tuned, x_va, y_va),
           "seconds": time.perf_counter() - t,
           "dp_drops_vs_finetuned_base": {f"{r['budget']:g}": 100 * (acc - r["dp"]["accuracy"]) for r in d["runs"]},
           "baseline_drops_vs_finetuned_base": {f"{r['budget']:g}": 100 * (acc - r["baseline"]["accuracy"])
                                                for r in d["runs"] if r["baseline"] is not None}}  # fmt: skip
    print(f"control: base fine-tuned {100 * acc:.2f} %", flush=True)
    return out


def write(res: dict) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{NAME}.json").write_text(json.dumps(res, indent=2))
    (OUT / f"{NAME}.md").write_text(bench_markdown(res))
    plot_report(res["report"], OUT / f"{NAME}.png")


def main() -> None:
    t0 = time.perf_counter()
    load_before = [round(x, 2) for x in os.getloadavg()]
    rep = run_compress(CONFIG)
    wall = time.perf_counter() - t0
    d = rep.to_dict()
    res = {
        "name": NAME,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}",
        "load_before": load_before,
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "seconds": wall,
        "report": d,
        "targets": targets(d, wall),
        "config": dataclasses.asdict(CONFIG),
    }
    write(res)
    for t in res["targets"]:
        print(f"{'MET ' if t['met'] else 'MISS'} {t['target']}: {t['result']}", flush=True)
    print(f"pipeline done in {wall / 60:.1f} min", flush=True)
    res["control"] = control(d)
    write(res)


if __name__ == "__main__":
    main()
