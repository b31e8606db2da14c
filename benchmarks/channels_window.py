"""Is the channel B&B's incumbent optimal within small windows of maps? A diagnostic of its primal side (issue 5).

For the CIFAR ResNet-20 instances of ``benchmarks/channels.py`` (FLOPs budgets 30 %, 50 %, 70 %; synthetic importances
of seed 0) it runs the B&B for ``BNB_LIMIT`` seconds, then searches windows of ``WINDOW`` consecutive maps around its
incumbent: every binary outside the window is fixed to the incumbent's value and the F1 McCormick MILP of the rest is
solved to optimality by HiGHS (scipy ``milp``). A better window optimum becomes the new incumbent. A sweep takes the
windows starting at every map in turn; sweeps repeat until one improves nothing (at most ``ROUNDS``).

Any improvement shows that the B&B's incumbent is not optimal, so part of its gap at the limit is on the primal side.
HiGHS is the sub-solver here only because this is a diagnostic: a window search inside the B&B would use its own
search on the restricted node.

Writes benchmarks/results/channels_window.json and .md. Run from the repository root:
``python benchmarks/channels_window.py``.
"""

import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _common import write_results  # noqa: E402

from combax.solvers import channels  # noqa: E402
from combax.solvers._channels_layout import f1_model, layout  # noqa: E402
from combax.solvers._channels_refs import _masks_from_bits, hint_bits  # noqa: E402
from combax.solvers._channels_result import make_result  # noqa: E402
from combax.solvers._status import Status  # noqa: E402

SEED = 0
RATIOS = (0.3, 0.5, 0.7)
BNB_LIMIT = 20.0
WINDOW = 3
ROUNDS = 4
WINDOW_LIMIT = 60.0  # HiGHS time limit per window (every window of this run finished far below it)
OUT = ROOT / "benchmarks" / "results"


def window_search(ratio: float, bar) -> dict:
    from scipy.optimize import Bounds, LinearConstraint, milp

    prob = channels.resnet_cifar(20, SEED, resource="flops", ratio=ratio)
    c = prob._grouped()._c
    lay = layout(c)
    model = f1_model(c, lay)
    n, p, m = lay.n, len(model.pu), len(c["widths"]) - 1
    sol = channels.solve(prob, "bnb", time_limit=BNB_LIMIT, rel_gap=1e-6)
    u = [None] + [sol.keep_out[c["order"][t - 1]] for t in range(1, m + 1)]
    x = hint_bits(c, u, sol.keep).astype(float)  # the F1 layout's binaries of the incumbent
    inc = float(model.lin_obj @ x + model.obj[n:] @ (x[model.pu] * x[model.pv]))
    if abs(inc - sol.objective) > 1e-6 * max(1.0, abs(inc)):
        raise RuntimeError(f"incumbent's F1 value {inc} differs from the B&B's objective {sol.objective}")
    constraints = LinearConstraint(model.a, model.lo, model.hi)
    integrality = np.concatenate([np.ones(n), np.zeros(p)])
    starts = range(1, m + 1)
    improvements, n_windows, t0 = [], 0, time.perf_counter()
    for rnd in range(ROUNDS):
        improved = False
        for start in starts:
            maps = list(range(start, min(m, start + WINDOW - 1) + 1))
            free = np.zeros(n, bool)
            for t in maps:
                free[lay.uvar[t]] = True
                free[lay.vvar[t][lay.vvar[t] >= 0]] = True
            lb = np.concatenate([np.where(free, 0.0, x), np.zeros(p)])
            ub = np.concatenate([np.where(free, 1.0, x), np.ones(p)])
            res = milp(-model.obj, constraints=constraints, integrality=integrality, bounds=Bounds(lb, ub),
                       options={"time_limit": WINDOW_LIMIT, "mip_rel_gap": 1e-9})  # fmt: skip
            n_windows += 1
            bar.update()
            if res.status != 0:
                raise RuntimeError(f"window {maps} at {ratio:.0%}: HiGHS status {res.status} ({res.message})")
            if -res.fun > inc + 1e-9 * max(1.0, abs(inc)):
                improvements.append({"round": rnd, "maps": maps, "from": inc, "to": float(-res.fun)})
                inc, x, improved = float(-res.fun), np.round(res.x[:n]), True
        if not improved:
            break
    # the window incumbent, checked as any solver's selection: `make_result` raises on a broken invariant or budget
    check = make_result(prob, *_masks_from_bits(c, lay, x), Status.TIME_LIMIT, np.nan, 0.0, 0, "window search")
    if abs(check.objective - inc) > 1e-6 * max(1.0, abs(inc)):
        raise RuntimeError(f"window incumbent at {ratio:.0%}: objective {check.objective}, F1 value {inc}")
    return {
        "flops_ratio": ratio,
        "budget": float(prob.budget),
        "window_resource": float(check.resource),
        "bnb_objective": float(sol.objective),
        "bnb_bound": float(sol.bound),
        "bnb_status": str(sol.status),
        "window_objective": inc,
        "improvements": improvements,
        "windows_solved": n_windows,
        "sweeps": rnd + 1,
        "window_seconds": time.perf_counter() - t0,
    }


def markdown(r: dict) -> str:
    lines = [
        "# channels: is the B&B's incumbent optimal within windows of maps? (ResNet-20, FLOPs)",
        "",
        f"Machine: {r['machine']}. Instances of `benchmarks/channels.py` (synthetic importances, seed {r['seed']}). "
        f"The B&B runs {r['bnb_limit_s']:g} s; then every window of {r['window']} consecutive maps is re-optimised "
        "with the rest fixed to the incumbent (F1 MILP of the window, HiGHS, proven optimal), sweeps repeated until "
        "one improves nothing. The final selection is re-checked by `ChannelProblem.evaluate` (objective, "
        "resource <= budget, no broken invariant).",
        "",
        "| FLOPs | B&B objective | B&B bound | after window search | gain | B&B gap | gap with the window incumbent "
        "| windows (sweeps) | seconds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for d in r["instances"]:
        b, w, ub = d["bnb_objective"], d["window_objective"], d["bnb_bound"]
        lines.append(
            f"| {d['flops_ratio']:.0%} | {b:.6f} | {ub:.6f} | {w:.6f} | {max(w - b, 0.0):.6f} | {(ub - b) / ub:.2e} | "
            f"{(ub - w) / ub:.2e} | {d['windows_solved']} ({d['sweeps']}) | {d['window_seconds']:.1f} |"
        )
    lines += ["", "Improvements found:", ""]
    for d in r["instances"]:
        for x in d["improvements"]:
            lines.append(
                f"- {d['flops_ratio']:.0%}, sweep {x['round'] + 1}, maps {x['maps'][0]}-{x['maps'][-1]}: "
                f"{x['from']:.6f} -> {x['to']:.6f}"
            )
        if not d["improvements"]:
            lines.append(f"- {d['flops_ratio']:.0%}: none (the incumbent is optimal in every window)")
    return "\n".join(lines) + "\n"


def main() -> int:
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "seed": SEED,
        "bnb_limit_s": BNB_LIMIT,
        "window": WINDOW,
        "instances": [],
    }
    channels.solve(channels.resnet_cifar(8, 0, ratio=0.5), "bnb", node_limit=20)  # warm the kernels
    with tqdm(desc="channels_window", unit="window") as bar:
        for ratio in RATIOS:
            bar.set_postfix_str(f"{ratio:.0%}")
            result["instances"].append(window_search(ratio, bar))
    write_results(OUT, "channels_window", result, markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
