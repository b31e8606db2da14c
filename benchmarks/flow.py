"""Exact k-hot codes per minibatch: combax numba vs OR-Tools vs networkx (the original timing study's grid).

Instances: square score matrices n = d in {32, 64, 128, 256, 512}, k = 4, lam = 1, uniform random scores in [0, 1)
(seed = size). Every backend is called through ``assign.sparse_codes(..., backend=...)``, so graph building is
included for OR-Tools and networkx (the spec's network with parallel unit arcs, vectorised); the numba backend builds
no graph. An extra column times the general ``flow.min_cost_flow`` (network simplex) on the same network, graph
building included. All energies must agree (OR-Tools and networkx round costs to int64 at 2**40 / max|cost|).

Repeats: 20 per backend and size, except that a backend whose first timed solve takes more than 2 s gets 3 repeats,
and networkx is skipped at a size when its time at the previous size times 8 (its observed growth per doubling is
about 5-8x) exceeds 60 s. numba compile time is measured in fresh processes, with an empty cache (cold) and with the
warm on-disk cache.

Run from the repository root: ``python benchmarks/flow.py``. Writes benchmarks/results/flow.{json,md}.
"""

import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
from _common import compile_times
from tqdm import tqdm

from combax.solvers import assign, flow
from combax.solvers._assign_reference import _network

SIZES = (32, 64, 128, 256, 512)
K = 4
LAM = 1.0
REPEATS = 20
SLOW_S = 2.0
SLOW_REPEATS = 3
NX_LIMIT_S = 60.0
OUT = Path(__file__).resolve().parent / "results"


def _time(fn, repeats):
    times = []
    out = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
        if len(times) == 1 and times[0] > SLOW_S:
            repeats = min(repeats, SLOW_REPEATS)
        if len(times) >= repeats:
            break
    return statistics.median(times), len(times), out


def _general_flow(s):
    tails, heads, cap, cost, supply, _, first = _network(s, K, LAM, None, 0, 0.0)
    res = flow.min_cost_flow(tails, heads, cap, cost, supply)
    return res.flow[first : first + s.size].reshape(s.shape) > 0


_COMPILE_SNIPPET = """
import time
t0 = time.perf_counter()
import numpy as np
from combax.solvers import assign, flow
s = np.random.default_rng(0).random((6, 5))
assign.sparse_codes(s, 2, 1.0)
assign.sparse_codes(s, 2, 1.0, groups=[0, 0, 1, 1, 2, 2], lam_group=1.0)
flow.min_cost_flow([0, 1], [1, 0], [1, flow.INF], [1.0, -0.5], [1, -1])
print(time.perf_counter() - t0)
"""


def main():
    results = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, shared with other jobs",
        "k": K,
        "lam": LAM,
        "repeats": REPEATS,
        "sizes": {},
    }
    warm = np.random.default_rng(0).random((8, 8))
    assign.sparse_codes(warm, 2, LAM)  # cache load before timing
    flow.min_cost_flow([0], [1], [1], [1.0], [1, -1])
    backends = ("numba", "ortools", "networkx", "flow.min_cost_flow")
    bar = tqdm(total=len(SIZES) * len(backends) + 2, desc="flow", unit="run")
    nx_prev = None
    for size in SIZES:
        s = np.random.default_rng(size).random((size, size))
        row = {"n": size, "d": size}
        energies = {}
        for backend in backends:
            bar.set_postfix_str(f"{size}x{size} {backend}")
            if backend == "networkx" and nx_prev is not None and nx_prev * 8 > NX_LIMIT_S:
                row["networkx_ms"] = None
                row["networkx_repeats"] = 0
                bar.update()
                continue
            if backend == "flow.min_cost_flow":
                fn = lambda s=s: _general_flow(s)  # noqa: E731
            else:
                fn = lambda b=backend, s=s: assign.sparse_codes(s, K, LAM, backend=b)  # noqa: E731
            med, reps, z = _time(fn, REPEATS)
            key = "general_flow" if backend == "flow.min_cost_flow" else backend
            row[f"{key}_ms"] = med * 1e3
            row[f"{key}_repeats"] = reps
            energies[key] = assign.energy(s, z, LAM)
            if backend == "networkx":
                nx_prev = med
            bar.update()
        ref = energies["numba"]
        row["energy"] = ref
        row["energies"] = energies
        row["max_energy_gap"] = max(abs(e - ref) for e in energies.values())
        row["energies_agree"] = row["max_energy_gap"] <= 1e-9 * max(1.0, abs(ref))
        row["ortools_over_numba"] = row["ortools_ms"] / row["numba_ms"]
        row["networkx_over_numba"] = row["networkx_ms"] / row["numba_ms"] if row.get("networkx_ms") else None
        row["general_flow_over_numba"] = row["general_flow_ms"] / row["numba_ms"]
        results["sizes"][str(size)] = row
    compile_times(_COMPILE_SNIPPET, results, bar)
    bar.close()

    rows = results["sizes"]
    big = [r for r in rows.values() if r["n"] >= 64]
    results["targets"] = {
        "numba_64_ms": rows["64"]["numba_ms"],
        "numba_64_le_0.3ms": rows["64"]["numba_ms"] <= 0.3,
        "numba_512_ms": rows["512"]["numba_ms"],
        "numba_512_le_30ms": rows["512"]["numba_ms"] <= 30.0,
        "min_ortools_over_numba_ge64": min(r["ortools_over_numba"] for r in big),
        "ortools_ge_5x": all(r["ortools_over_numba"] >= 5 for r in big),
        "min_networkx_over_numba_ge64": min(r["networkx_over_numba"] for r in big if r["networkx_over_numba"]),
        "networkx_ge_50x": all(r["networkx_over_numba"] >= 50 for r in big if r["networkx_over_numba"]),
        "energies_agree": all(r["energies_agree"] for r in rows.values()),
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "flow.json").write_text(json.dumps(results, indent=2) + "\n")
    md = _markdown(results)
    (OUT / "flow.md").write_text(md)
    print(md)


def _ms(v):
    return "skipped" if v is None else (f"{v:.3f}" if v < 10 else f"{v:.1f}")


def _ratio(v):
    return "-" if v is None else f"{v:.1f}x"


def _markdown(r):
    lines = [
        "# flow: exact k-hot codes per minibatch (k = 4, lam = 1, uniform scores), median ms per solve",
        "",
        f"Machine: {r['machine']}. The machine was shared with other jobs while this ran, so absolute numbers are "
        "noisy; the ratios are measured in the same process on the same instances. Graph building is included for "
        "every backend (numba builds no graph). `flow.min_cost_flow` is the general network simplex on the same "
        "network as OR-Tools/networkx.",
        "",
        "| n x d | numba | OR-Tools | networkx | flow.min_cost_flow | OR-Tools / numba | networkx / numba "
        "| min_cost_flow / numba | energy (all equal) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in r["sizes"].values():

        def rep(key, row=row):
            reps = row.get(f"{key}_repeats")
            return f" ({reps} rep.)" if reps not in (None, 0, REPEATS) else ""

        lines.append(
            f"| {row['n']}x{row['d']} | {_ms(row['numba_ms'])}{rep('numba')} | {_ms(row['ortools_ms'])}{rep('ortools')} | "
            f"{_ms(row.get('networkx_ms'))}{rep('networkx')} | {_ms(row['general_flow_ms'])}{rep('general_flow')} | "
            f"{_ratio(row['ortools_over_numba'])} | {_ratio(row['networkx_over_numba'])} | "
            f"{_ratio(row['general_flow_over_numba'])} | {row['energy']:.6f} ({row['energies_agree']}) |"
        )
    t = r["targets"]
    lines += [
        "",
        f"numba first call in a fresh process: {r['numba_first_call_cold_cache_s']:.1f} s with an empty cache "
        f"(compile), {r['numba_first_call_warm_cache_s']:.2f} s with the warm on-disk cache (includes imports).",
        "",
        "Targets (issue 4):",
        f"- numba <= 0.3 ms at 64x64: {t['numba_64_le_0.3ms']} ({t['numba_64_ms']:.3f} ms)",
        f"- numba <= 30 ms at 512x512: {t['numba_512_le_30ms']} ({t['numba_512_ms']:.1f} ms)",
        f"- >= 5x faster than OR-Tools at every size >= 64: {t['ortools_ge_5x']} "
        f"(min {t['min_ortools_over_numba_ge64']:.2f}x)",
        f"- >= 50x faster than networkx at every size >= 64 (where it ran): {t['networkx_ge_50x']} "
        f"(min {t['min_networkx_over_numba_ge64']:.1f}x)",
        f"- energies equal across backends: {t['energies_agree']}",
        "",
    ]
    missed = [name for name, ok in t.items() if ok is False]
    if missed:
        lines += [
            f"Missed on this run: {', '.join(missed)}. The numba backend prices the buckets (a few damped rounds "
            "against the load imbalance), gives every row its top-k at those prices, and repairs the remaining "
            "imbalance with one array-scan Dijkstra per unit (about 61 at 512x512 instead of n k = 2048). Times "
            "are wall-clock medians on a 2-core machine shared with other jobs; read the ratios, which are "
            "measured in the same process on the same instances.",
            "",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
