"""``combax codes``: exact k-hot codes of a score matrix (one minibatch), and the demo step.

Solves ``assign.sparse_codes`` (``specs/hash_flow.md`` §1.0): every row of SCORES takes exactly k distinct buckets,
maximising the summed scores minus ``lam`` per pair of rows sharing a bucket (plus ``lam_group`` per same-group pair).

Inputs
------
SCORES
    ``.npy`` file holding a real (n, d) array (per-class mean activations, or minus a cost).
``--groups G.npy``
    Optional ``.npy`` of n integer group labels (parent paths of a compound-code level); used with ``--lam-group``.

Examples
--------
``combax codes scores.npy --k 4 --lam 1.0 --out codes.npy``
``combax codes scores.npy --k 1 --lam 1.0 --groups parents.npy --lam-group 100 --backend ortools --json``
"""

import argparse
import json
import sys
import time
from pathlib import Path

DEMO_ORDER = 30

_DEMO_SHAPE = (64, 64)
_DEMO_K = 4
_DEMO_LAM = 1.0


def register(subparsers) -> argparse.ArgumentParser:
    """Add ``combax codes``; returns its parser."""
    p = subparsers.add_parser(
        "codes",
        help="exact k-hot hash codes of a score matrix under bucket-collision penalties (min-cost flow)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("scores", help="(n, d) score matrix, .npy")
    p.add_argument("--k", type=int, required=True, help="buckets per row, 1 <= k <= d")
    p.add_argument("--lam", type=float, required=True, help="penalty per pair of rows sharing a bucket, >= 0")
    p.add_argument("--groups", default=None, help="(n,) integer group labels, .npy")
    p.add_argument("--lam-group", type=float, default=0.0, help="extra penalty per same-group pair (needs --groups)")
    p.add_argument("--backend", choices=("numba", "ortools", "networkx"), default="numba", help="solver backend")
    p.add_argument("--out", default=None, help="write the (n, d) bool codes to this .npy file")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=_cmd_codes)
    return p


def _fail(exc) -> int:
    print(f"combax codes: error: {exc}", file=sys.stderr)
    return 2


def _load_npy(path, what):
    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{what} file {str(path)!r} does not exist; pass the path of a .npy file")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise ValueError(
            f"{what} file {str(path)!r} is not a readable .npy array ({exc}); save it with numpy.save"
        ) from None


def summary(scores, codes, lam, groups=None, lam_group=0.0) -> dict:
    """Energy, collision count and bucket-load statistics of a code matrix."""
    import numpy as np

    from combax.solvers import assign

    load = codes.sum(axis=0)
    return {
        "n": int(codes.shape[0]),
        "d": int(codes.shape[1]),
        "energy": assign.energy(scores, codes, lam, groups, lam_group),
        "score": float(np.asarray(scores, dtype=np.float64)[codes].sum()),
        "collisions": int((load * (load - 1) // 2).sum()),
        "load_min": int(load.min()),
        "load_max": int(load.max()),
        "load_mean": float(load.mean()),
        "empty_buckets": int((load == 0).sum()),
    }


def _cmd_codes(args) -> int:
    import numpy as np

    from combax.solvers import assign

    try:
        scores = _load_npy(args.scores, "SCORES")
        groups = _load_npy(args.groups, "`--groups`") if args.groups is not None else None
        t0 = time.perf_counter()
        codes = assign.sparse_codes(scores, args.k, args.lam, groups, args.lam_group, backend=args.backend)
        seconds = time.perf_counter() - t0
        info = summary(scores, codes, args.lam, groups, args.lam_group)
    except (ValueError, ImportError) as exc:
        return _fail(exc)
    if args.out:
        np.save(args.out, codes)
    info = {"backend": args.backend, "k": args.k, "lam": args.lam, "lam_group": args.lam_group, **info}
    info["seconds"] = seconds
    info["out"] = args.out
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(f"codes        {info['n']} x {info['d']}, k = {args.k}, lam = {args.lam:g}, backend {args.backend}")
        print(f"energy       {info['energy']:.10g}   (score {info['score']:.6g}, {info['collisions']} colliding pairs)")
        print(
            f"loads        min {info['load_min']}  mean {info['load_mean']:.3g}  max {info['load_max']}  "
            f"empty buckets {info['empty_buckets']}"
        )
        print(f"solve        {seconds * 1e3:.2f} ms")
        if args.out:
            print(f"codes written to {args.out}")
    return 0


def demo(out_dir: Path) -> list:
    """A 64 x 64 minibatch (k = 4, lam = 1, uniform scores, seed 0) with every backend: equal energies, times."""
    import numpy as np

    from combax.demo import DemoRow
    from combax.solvers import assign, flow
    from combax.solvers._assign_reference import _network

    rng = np.random.default_rng(0)
    s = rng.random(_DEMO_SHAPE)
    k, lam = _DEMO_K, _DEMO_LAM
    t0 = time.perf_counter()
    assign.sparse_codes(s[:4, :8], 2, lam)  # first call: compile or load the numba cache
    first = time.perf_counter() - t0

    runs = []  # (task, energy or None, result text, seconds)
    for backend in ("numba", "ortools", "networkx"):
        try:
            times = []
            for _ in range(5 if backend != "networkx" else 1):
                t0 = time.perf_counter()
                z = assign.sparse_codes(s, k, lam, backend=backend)
                times.append(time.perf_counter() - t0)
        except ImportError as exc:
            runs.append((f"64x64 minibatch k=4 lam=1, backend {backend}", None, f"skipped: {exc}", 0.0))
            continue
        e = assign.energy(s, z, lam)
        ms = 1e3 * float(np.median(times))
        extra = f" (first call {first:.2f} s: compile or cache load)" if backend == "numba" else ""
        runs.append(
            (f"64x64 minibatch k=4 lam=1, backend {backend}", e, f"E = {e:.9f}, {ms:.2f} ms{extra}", sum(times))
        )
    t0 = time.perf_counter()
    tails, heads, cap, cost, supply, _, _ = _network(s, k, lam, None, 0, 0.0)
    res = flow.min_cost_flow(tails, heads, cap, cost, supply)
    dt = time.perf_counter() - t0
    runs.append(
        (
            "same minibatch, flow.min_cost_flow on the spec's network",
            res.cost,
            f"E = {res.cost:.9f}, {dt * 1e3:.1f} ms ({res.pivots} pivots, graph build included)",
            dt,
        )
    )
    ref = runs[0][1]
    rows = []
    for task, e, result, secs in runs:
        if e is None or ref is None:
            check = ""
        else:
            gap = abs(e - ref)
            check = f"E = E(numba): {gap <= 1e-9 * max(1.0, abs(ref))} (|dE| = {gap:.1e})"
        rows.append(DemoRow("codes", task, result, check, float(secs)))
    return rows
