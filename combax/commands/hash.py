"""``combax hash``: learn a sparse hash table end to end (exact codes per minibatch) and search it.

Pipeline (``specs/hash_flow.md``): stratified 80/20 split of a bundled data set (train = database, test = queries);
metric stage (triplet CNN embedding); hash stage (fresh hash head, exact min-cost-flow codes of every minibatch's class
means, masked triplet loss); a hash table of the database; test-to-train retrieval with bucket expansion and exact
re-ranking in the metric embedding.

Examples
--------
``combax hash train --data mnist5k --k 2 --d 64 --lam 1.0``   (writes hash_out/)
``combax hash eval``                                          (reads hash_out/, compares with the baselines)
"""

import argparse
import json
import time
from pathlib import Path

DEMO_ORDER = 40

KS = (1, 4, 16)
DATASETS = ("mnist5k", "digits")


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "hash",
        help="learned sparse hash tables: train with exact per-minibatch codes, search, compare with baselines",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="hash_command", metavar="ACTION")
    t = sub.add_parser("train", help="metric stage + hash stage on a bundled data set; writes the model and table")
    t.add_argument("--data", choices=DATASETS, default="mnist5k")
    t.add_argument("--k", type=int, default=2, help="active buckets per item (s at the last level if --levels 2)")
    t.add_argument("--d", type=int, default=64, help="buckets per level")
    t.add_argument("--lam", type=float, default=1.0, help="pairwise bucket-sharing penalty lambda")
    t.add_argument("--levels", type=int, default=1, help="1 = flat codes (paper A), 2 = compound codes (paper B)")
    t.add_argument("--lam-group", type=float, default=100.0, help="sibling penalty for compound levels")
    t.add_argument("--steps", type=int, default=300, help="hash-stage steps")
    t.add_argument("--metric-steps", type=int, default=400, help="metric-stage steps")
    t.add_argument("--mode", choices=("callback", "host"), default="callback", help="where the solver runs")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", default="hash_out", help="output folder (default: hash_out)")
    t.set_defaults(func=_cmd_train)
    e = sub.add_parser("eval", help="test-to-train retrieval with a trained table, against the baselines")
    e.add_argument("--model", default="hash_out", help="folder written by `combax hash train`")
    e.add_argument("--no-baselines", action="store_true", help="only the learned table and the linear scan")
    e.add_argument("--json", action="store_true", help="print the rows as JSON")
    e.set_defaults(func=_cmd_eval)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
    return p


# ------------------------------------------------------------------------------------------------ pipeline pieces


def load_split(name: str, seed: int = 0):
    """(x_db, y_db, x_query, y_query): a stratified 80/20 split of a bundled data set (database = train side)."""
    from combax import data

    if name not in DATASETS:
        raise ValueError(f"`data` must be one of {DATASETS}; got {name!r}")
    ds = getattr(data, name)()
    tr, te = data.stratified_split(ds.labels, 0.2, seed=seed)
    return ds.images[tr], ds.labels[tr], ds.images[te], ds.labels[te]


def retrieval_row(query, keys, db_labels, q_labels) -> dict:
    """precision@K, SUF@K (K in 1, 4, 16) and NMI for one method; ``query(K)`` returns a QueryResult."""
    from combax.adapters.retrieval_metrics import nmi, precision_at

    row = {}
    for K in KS:
        r = query(K)
        row[f"p@{K}"] = precision_at(r.indices, db_labels, q_labels, K)
        row[f"suf@{K}"] = r.speedup
    row["nmi"] = nmi(keys, db_labels)
    return row


def learned_row(result, net, x_db, y_db, x_q, y_q, emb_db, emb_q):
    """Build the table from a trained hash head and evaluate it; returns (row, HashIndex)."""
    from combax.adapters.hash_index import HashIndex
    from combax.adapters.hashing import network_outputs

    _, act_db = network_outputs(result.params, net, x_db)
    _, act_q = network_outputs(result.params, net, x_q)
    index = HashIndex.build(act_db, emb_db, result.config.k, levels=result.config.levels)
    row = retrieval_row(lambda K: index.query(act_q, emb_q, K), index.keys, y_db, y_q)
    return row, index


def baseline_rows(emb_db, y_db, emb_q, y_q, k: int, d: int, target_suf: float | None, seed: int = 0) -> dict:
    """Th, VQ (d clusters, k probes: the spec's baseline), and VQ / FAISS IVF at the SUF nearest ``target_suf``."""
    import numpy as np

    from combax.adapters.hash_baselines import FaissIVF, ThresholdIndex, VQIndex, at_matched_suf

    rows = {}
    th = ThresholdIndex.build(emb_db, k)
    rows["Th"] = retrieval_row(lambda K: th.query(emb_q, K), th.keys, y_db, y_q)
    vq = VQIndex.build(emb_db, d, k, seed=seed)
    rows[f"VQ({d})"] = retrieval_row(lambda K: vq.query(emb_q, K), vq.keys, y_db, y_q)
    if target_suf is None:
        return rows
    grid = np.unique(np.round(np.geomspace(k, max(4 * k * target_suf, k + 1), 14)).astype(int))
    grid = grid[(grid >= k) & (grid <= len(y_db) // 4)]
    vq_m, _ = at_matched_suf(lambda n: VQIndex.build(emb_db, n, k, seed=seed), emb_q, target_suf, 16, grid)
    rows["VQ@SUF"] = retrieval_row(lambda K: vq_m.query(emb_q, K), vq_m.keys, y_db, y_q)
    rows["VQ@SUF"]["nlist"] = int(vq_m.centroids.shape[0])
    try:
        ivf, _ = at_matched_suf(lambda n: FaissIVF.build(emb_db, n, k, seed=seed), emb_q, target_suf, 16, grid)
    except ImportError as exc:  # the extra is missing: say so in the table instead of a row
        rows["FAISS-IVF@SUF"] = {"unavailable": str(exc)}
    else:
        rows["FAISS-IVF@SUF"] = retrieval_row(lambda K: ivf.query(emb_q, K), ivf.keys, y_db, y_q)
        rows["FAISS-IVF@SUF"]["nlist"] = int(ivf.index.nlist)
    return rows


def format_rows(rows: dict) -> str:
    """Method -> row dict as an aligned text table."""
    head = f"{'method':<16} {'p@1':>6} {'p@4':>6} {'p@16':>6} {'NMI':>6} {'SUF@1':>7} {'SUF@16':>7}"
    lines = [head, "-" * len(head)]
    for name, r in rows.items():
        if "unavailable" in r:
            lines.append(f"{name:<16} {r['unavailable']}")
            continue
        lines.append(
            f"{name:<16} {100 * r['p@1']:6.2f} {100 * r['p@4']:6.2f} {100 * r['p@16']:6.2f} {r['nmi']:6.3f} "
            f"{r['suf@1']:7.2f} {r['suf@16']:7.2f}"
        )
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ commands


def _nets(args_d, levels, embed_dim=64):
    from combax.models.embedding import EmbeddingConfig

    return EmbeddingConfig(embed_dim=embed_dim, hash_dim=args_d, levels=levels)


def _cmd_train(args) -> int:
    import flax.serialization
    import numpy as np

    from combax.adapters.hashing import HashConfig, network_outputs, train_hash, train_metric

    cfg = HashConfig(
        k=args.k, d=args.d, lam=args.lam, levels=args.levels, lam_group=args.lam_group, steps=args.steps,
        seed=args.seed, mode=args.mode,
    )  # fmt: skip
    net = _nets(args.d, args.levels)
    x_db, y_db, x_q, y_q = load_split(args.data, args.seed)
    t0 = time.perf_counter()
    metric_params, _ = train_metric(x_db, y_db, net, steps=args.metric_steps, seed=args.seed)
    print(f"metric stage: {args.metric_steps} steps in {time.perf_counter() - t0:.1f} s")
    res = train_hash(x_db, y_db, metric_params, net, cfg)
    print(
        f"hash stage: {cfg.steps} steps, {res.steps_per_second:.1f} steps/s, solver {100 * res.solver_fraction:.2f}% "
        f"of step time, final loss {res.losses[-10:].mean():.4f}"
    )
    emb_db, _ = network_outputs(metric_params, net, x_db)
    emb_q, _ = network_outputs(metric_params, net, x_q)
    row, index = learned_row(res, net, x_db, y_db, x_q, y_q, emb_db, emb_q)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    index.save(out / "table.npz")
    (out / "params.msgpack").write_bytes(flax.serialization.to_bytes(res.params))
    meta = {"data": args.data, "seed": args.seed, "k": args.k, "d": args.d, "lam": args.lam, "levels": args.levels}
    meta.update({"lam_group": args.lam_group, "steps": args.steps, "metric_steps": args.metric_steps})
    (out / "config.json").write_text(json.dumps(meta, indent=2) + "\n")
    np.save(out / "query_embeddings.npy", emb_q)
    print(format_rows({"ours": row}))
    print(f"wrote {out}/ (table.npz, params.msgpack, config.json)")
    return 0


def _cmd_eval(args) -> int:
    import flax.serialization
    import numpy as np

    from combax.adapters.hash_baselines import linear_scan
    from combax.adapters.hash_index import HashIndex
    from combax.adapters.hashing import network_outputs
    from combax.models.embedding import init_params

    folder = Path(args.model)
    if not (folder / "config.json").exists():
        raise SystemExit(f"`--model`: {folder}/config.json not found; run `combax hash train` first")
    meta = json.loads((folder / "config.json").read_text())
    net = _nets(meta["d"], meta["levels"])
    x_db, y_db, x_q, y_q = load_split(meta["data"], meta["seed"])
    params = flax.serialization.from_bytes(init_params(net, x_db.shape[1:]), (folder / "params.msgpack").read_bytes())
    index = HashIndex.load(folder / "table.npz")
    emb_q = np.load(folder / "query_embeddings.npy")
    _, act_q = network_outputs(params, net, x_q)
    emb_db = index.embeddings
    rows = {"linear scan": retrieval_row(lambda K: linear_scan(emb_db, emb_q, K), np.zeros(len(y_db)), y_db, y_q)}
    rows["ours"] = retrieval_row(lambda K: index.query(act_q, emb_q, K), index.keys, y_db, y_q)
    if not args.no_baselines:
        rows.update(baseline_rows(emb_db, y_db, emb_q, y_q, meta["k"], meta["d"], rows["ours"]["suf@16"], meta["seed"]))
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"{meta['data']}: {len(y_q)} test queries against {len(y_db)} training items")
        print(format_rows(rows))
    return 0


# ------------------------------------------------------------------------------------------------ demo


def demo(out_dir: Path) -> list:
    """A small flat table (k = 1, d = 64) trained on MNIST-5k and searched, against the linear scan and FAISS IVF."""
    import numpy as np

    from combax.adapters.hash_baselines import linear_scan
    from combax.adapters.hashing import HashConfig, network_outputs, train_hash, train_metric
    from combax.demo import DemoRow
    from combax.solvers import assign

    t0 = time.perf_counter()
    net = _nets(64, 1)
    cfg = HashConfig(k=1, d=64, lam=1.0, steps=150, seed=0)
    x_db, y_db, x_q, y_q = load_split("mnist5k", 0)
    metric_params, _ = train_metric(x_db, y_db, net, steps=250, seed=0, progress=False)
    res = train_hash(x_db, y_db, metric_params, net, cfg, progress=False)
    emb_db, _ = network_outputs(metric_params, net, x_db)
    emb_q, _ = network_outputs(metric_params, net, x_q)
    row, index = learned_row(res, net, x_db, y_db, x_q, y_q, emb_db, emb_q)
    ls = retrieval_row(lambda K: linear_scan(emb_db, emb_q, K), np.zeros(len(y_db)), y_db, y_q)
    t_train = time.perf_counter() - t0
    # oracle: the codes of the last minibatch are the OR-Tools min-cost-flow optimum (energy equal)
    from combax.adapters.hashing import class_balanced_batches, class_means
    from combax.models.embedding import EmbeddingNet
    from combax.models.metric_losses import l2_normalize

    x = x_db[next(class_balanced_batches(y_db, cfg.classes_per_batch, cfg.per_class, seed=1))]
    _, act = EmbeddingNet(net).apply(res.params, x)
    means = np.asarray(class_means(l2_normalize(act), cfg.classes_per_batch, cfg.per_class), dtype=np.float64)
    ours = assign.sparse_codes(means, cfg.k, cfg.lam)
    try:
        ref = assign.sparse_codes(means, cfg.k, cfg.lam, backend="ortools")
        gap = abs(assign.energy(means, ours, cfg.lam) - assign.energy(means, ref, cfg.lam))
        check = f"minibatch codes = OR-Tools optimum (|dE| = {gap:.1e}); linear scan p@1 {100 * ls['p@1']:.1f}"
    except ImportError:
        check = f"linear scan p@1 {100 * ls['p@1']:.1f} (OR-Tools missing: extra `ref`)"
    rows = [
        DemoRow(
            "hash",
            f"MNIST-5k table k=1 d=64: train {cfg.steps} steps, 1000 test queries vs 4000",
            f"p@1 {100 * row['p@1']:.1f}, SUF {row['suf@1']:.1f}, NMI {row['nmi']:.2f}, "
            f"solver {100 * res.solver_fraction:.1f}% of step time",
            check,
            t_train,
        )
    ]
    from matplotlib.figure import Figure  # no pyplot: leaves the caller's backend alone

    fig = Figure(figsize=(6, 3))
    ax = fig.subplots()
    ax.bar(np.arange(index.loads().size), index.loads(), color="tab:blue")
    ax.set_xlabel("bucket")
    ax.set_ylabel("database items")
    ax.set_title(f"MNIST-5k learned hash table (k=1, d=64): SUF {row['suf@1']:.1f}")
    fig.tight_layout()
    fig.savefig(out_dir / "hash_table_loads.png", dpi=100)
    rows.append(DemoRow("hash", "bucket load plot", str(out_dir / "hash_table_loads.png"), "", 0.0))
    return rows
