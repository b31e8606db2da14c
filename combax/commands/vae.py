"""``combax vae``: train CascadeVAE (or the beta-VAE / CascadeVAE-C baselines) on procedural dSprites, evaluate it.

CascadeVAE (Jeong & Song, ICML 2019; ``specs/cascade_vae.md``): a beta-VAE whose per-dimension beta is relaxed one
dimension at a time (the cascade), plus a discrete latent inferred per minibatch by an exact min-cost-flow step
(``assign.balanced_labels``). The data set is rendered on the fly: nothing is downloaded.

A checkpoint is a folder with ``params.msgpack`` (``flax.serialization``) and ``config.json`` (the training config).

Examples
--------
``combax vae train --steps 3000 --model cascade --image-size 32 --out vae_out``
``combax vae eval vae_out``             (FactorVAE score, both variants; shape accuracy of the discrete latent)
"""

import argparse
import json
import time
from pathlib import Path

DEMO_ORDER = 50

MODELS = ("cascade", "betavae", "cascade-c")
WIDTHS = {"original": ((32, 32, 64, 64), 256), "narrow": ((16, 16, 32, 32), 128)}


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "vae",
        help="CascadeVAE on procedural dSprites: train (exact discrete step per minibatch) and evaluate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="vae_command", metavar="ACTION")
    t = sub.add_parser("train", help="train one model; writes a checkpoint folder")
    t.add_argument("--steps", type=int, required=True, help="Adam steps (the original: 300000)")
    t.add_argument("--model", choices=MODELS, default="cascade", help="cascade (default), betavae or cascade-c")
    t.add_argument("--image-size", type=int, choices=(32, 64), default=32, help="dSprites side (64 = the original)")
    t.add_argument("--width", choices=tuple(WIDTHS), default="original", help="network widths")
    t.add_argument(
        "--interval",
        type=int,
        default=None,
        help="cascade interval r (default: steps / 15, the original timeline squeezed into the budget); stages "
        "under a few hundred steps leave the discrete latent near chance (the benchmark: --steps 6000 --interval 600)",
    )
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--learning-rate", type=float, default=1e-3, help="Adam learning rate (the original: 1e-4)")
    t.add_argument("--beta-low", type=float, default=0.1, help="beta of the open cascade dimensions (0.1 original)")
    t.add_argument("--lam", type=float, default=1e-3, help="balance penalty lambda of the discrete step")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", default="vae_out", help="checkpoint folder (default: vae_out)")
    t.set_defaults(func=_cmd_train)
    e = sub.add_parser("eval", help="FactorVAE score (both variants) and shape accuracy of a checkpoint")
    e.add_argument("checkpoint", help="folder written by `combax vae train` (or its params.msgpack)")
    e.add_argument("--votes", type=int, default=800, help="votes of the original variant (default 800)")
    e.add_argument("--vote-batch", type=int, default=None, help="images per vote (default: 100 original, 64 dlib)")
    e.add_argument("--dlib-votes", type=int, nargs=2, default=(1000, 500), help="train / eval votes (dlib variant)")
    e.add_argument("--n-global", type=int, default=10_000, help="images for global variances and the active test")
    e.add_argument("--n-shape", type=int, default=10_000, help="images for the shape accuracy")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--json", action="store_true", help="print the scores as JSON")
    e.set_defaults(func=_cmd_eval)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
    return p


# ------------------------------------------------------------------------------------------------ checkpoints


def save_checkpoint(folder, params, config) -> Path:
    """Write ``params.msgpack`` and ``config.json`` into ``folder``; returns the folder."""
    from dataclasses import asdict

    import flax.serialization

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    (out / "params.msgpack").write_bytes(flax.serialization.to_bytes(params))
    meta = asdict(config)
    meta["conv_features"] = list(meta["conv_features"])
    (out / "config.json").write_text(json.dumps(meta, indent=2) + "\n")
    return out


def load_checkpoint(path):
    """(params, TrainConfig) from a folder written by :func:`save_checkpoint` (or the path of its params.msgpack).

    Raises ``ValueError`` naming the file when it is missing or does not fit the configured architecture.
    """
    import flax.serialization

    from combax.adapters.vae import TrainConfig
    from combax.models.cascade_vae import init_params

    p = Path(path)
    folder = p.parent if p.suffix == ".msgpack" else p
    cfg_path, params_path = folder / "config.json", folder / "params.msgpack"
    for f in (cfg_path, params_path):
        if not f.is_file():
            raise ValueError(f"`checkpoint`: {f} not found; pass a folder written by `combax vae train`")
    meta = json.loads(cfg_path.read_text())
    meta["conv_features"] = tuple(meta.get("conv_features", (32, 32, 64, 64)))
    try:
        config = TrainConfig(**meta)
    except TypeError as exc:
        raise ValueError(f"`checkpoint`: {cfg_path} is not a combax vae config ({exc})") from None
    template = init_params(config.vae_config(), 0)
    try:
        params = flax.serialization.from_bytes(template, params_path.read_bytes())
    except Exception as exc:  # msgpack / structure errors of every kind
        raise ValueError(
            f"`checkpoint`: {params_path} does not match {cfg_path} ({type(exc).__name__}: {exc})"
        ) from None
    import jax

    got = [tuple(x.shape) for x in jax.tree_util.tree_leaves(params)]
    want = [tuple(x.shape) for x in jax.tree_util.tree_leaves(template)]
    if got != want:  # from_bytes restores the structure only, not the shapes
        bad = next(i for i, (g, w) in enumerate(zip(got, want)) if g != w)
        raise ValueError(
            f"`checkpoint`: {params_path} does not match {cfg_path} (array {bad} has shape {got[bad]}, "
            f"the config needs {want[bad]})"
        )
    return params, config


def plot_traversals(trav, cats, path=None, title: str = ""):
    """A grid of latent traversals (rows: continuous dimensions; a last row: the categories); saved to ``path`` and
    closed if one is given, else returned as a matplotlib figure."""

    m, n_val = trav.shape[:2]
    n_rows = m + (1 if cats is not None else 0)
    n_cols = max(n_val, len(cats) if cats is not None else 0)
    size = (1.1 * n_cols, 1.1 * n_rows)
    if path is None:  # returned for display: a pyplot figure
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(n_rows, n_cols, figsize=size, squeeze=False)
    else:  # written to a file: no pyplot, so the caller's backend is left alone
        from matplotlib.figure import Figure

        fig = Figure(figsize=size)
        axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for j in range(m):
        for v in range(n_val):
            axes[j, v].imshow(trav[j, v], cmap="gray", vmin=0, vmax=1)
        axes[j, 0].set_title(f"z{j}", fontsize=7, loc="left")
    if cats is not None:
        for k in range(len(cats)):
            axes[m, k].imshow(cats[k], cmap="gray", vmin=0, vmax=1)
            axes[m, k].set_title(f"d={k}", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    if path is None:
        return fig
    fig.savefig(path, dpi=100)
    return None


# ------------------------------------------------------------------------------------------------ commands


def _cmd_train(args) -> int:
    import numpy as np

    from combax.adapters.vae import TrainConfig, train

    feats, hidden = WIDTHS[args.width]
    try:  # every argument is checked before any compilation or training
        cfg = TrainConfig(
            model=args.model,
            steps=args.steps,
            interval=args.interval,
            image_size=args.image_size,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            beta_low=args.beta_low,
            lam=args.lam,
            seed=args.seed,
            conv_features=feats,
            hidden=hidden,
        )
    except ValueError as exc:
        raise SystemExit(f"combax vae train: {exc}") from None
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise SystemExit(f"combax vae train: --out {out} exists and is not a folder")
    res = train(cfg, progress=True)
    save_checkpoint(out, res.params, cfg)
    msg = f"{cfg.model}: {cfg.steps} steps in {res.seconds:.1f} s, final recon {res.recon[-20:].mean():.1f} nats"
    if res.n_discrete_steps:
        msg += (
            f"; discrete step on {res.n_discrete_steps} steps: solver {100 * res.discrete_share:.2f}% and unary costs "
            f"{100 * res.unary_share:.1f}% of the step time ({1e3 * res.step_seconds:.1f} ms)"
        )
    print(msg)
    print(f"mean KL per dimension: {np.array2string(res.kl[-20:].mean(axis=0), precision=2)}")
    print(f"wrote {out}/ (params.msgpack, config.json)")
    return 0


def _cmd_eval(args) -> int:
    from combax.adapters.vae import evaluate

    for name in ("votes", "n_global", "n_shape"):
        if getattr(args, name) < 2:
            raise SystemExit(f"combax vae eval: --{name.replace('_', '-')} must be at least 2")
    if args.vote_batch is not None and args.vote_batch < 2:
        raise SystemExit("combax vae eval: --vote-batch must be at least 2")
    try:
        params, cfg = load_checkpoint(args.checkpoint)
    except ValueError as exc:
        raise SystemExit(f"combax vae eval: {exc}") from None
    ev = evaluate(
        params,
        cfg,
        n_global=args.n_global,
        n_votes=args.votes,
        dlib_votes=tuple(args.dlib_votes),
        n_shape=args.n_shape,
        vote_batch=args.vote_batch,
        seed=args.seed,
    )
    row = {
        "model": cfg.model,
        "steps": cfg.steps,
        "factor_vae": ev.factor_vae,
        "factor_vae_dlib": ev.factor_vae_dlib,
        "shape_accuracy": ev.shape_accuracy,
        "active": ev.active.tolist(),
        "mean_kl": [round(float(k), 4) for k in ev.mean_kl],
        "seconds": ev.seconds,
    }
    if args.json:
        print(json.dumps(row, indent=2))
        return 0
    print(f"{cfg.model} ({cfg.steps} steps, {cfg.image_size}x{cfg.image_size}), last checkpoint:")
    print(f"  FactorVAE score, original variant ({args.votes} votes): {ev.factor_vae:.3f}")
    print(f"  FactorVAE score, disentanglement_lib eval accuracy:   {ev.factor_vae_dlib:.3f}")
    if ev.shape_accuracy is not None:
        print(f"  shape accuracy of the discrete latent (chance 0.333): {ev.shape_accuracy:.3f}")
    print(f"  active dimensions (mean KL > 0.1): {int(ev.active.sum())} of {len(ev.active)}")
    return 0


# ------------------------------------------------------------------------------------------------ demo


def demo(out_dir: Path) -> list:
    """A very small CascadeVAE run on 16x16 dSprites: the discrete step's share of the step time, checked against
    brute force on one minibatch, and a latent traversal plot."""
    import itertools

    import numpy as np

    from combax.adapters.vae import TrainConfig, discrete_step, latent_traversals, train
    from combax.data.dsprites import dsprites
    from combax.demo import DemoRow

    t0 = time.perf_counter()
    cfg = TrainConfig(
        model="cascade",
        steps=300,
        interval=12,
        image_size=16,
        batch_size=32,
        conv_features=(8, 8, 16, 16),
        hidden=64,
        learning_rate=3e-3,
    )
    res = train(cfg, progress=False)
    t_train = time.perf_counter() - t0
    # oracle: the exact step on an 8-sample slice of costs equals brute force over all 3^8 labelings
    rng = np.random.default_rng(0)
    u = rng.normal(100.0, 1.0, size=(8, 3))
    lam = 0.5
    obj = lambda lab: u[np.arange(8), lab].sum() + lam * sum(c * (c - 1) / 2 for c in np.bincount(lab, minlength=3))  # noqa: E731
    best = min(obj(np.array(lab)) for lab in itertools.product(range(3), repeat=8))
    gap = abs(obj(discrete_step(u, lam)) - best)
    rows = [
        DemoRow(
            "vae",
            f"CascadeVAE on 16x16 dSprites: {cfg.steps} steps, discrete step on {res.n_discrete_steps}",
            f"solver {100 * res.discrete_share:.2f}% of a step ({1e3 * res.solver_seconds:.2f} of "
            f"{1e3 * res.step_seconds:.1f} ms), unary costs {100 * res.unary_share:.0f}%",
            f"balanced_labels = brute force over 3^8 labelings (|dobj| = {gap:.1e})",
            t_train,
        )
    ]
    ds = dsprites(16)
    image = ds.render(np.array([[0, 2, 5, 0, 16, 16]]))[0]
    trav, cats = latent_traversals(res.params, cfg, image, values=np.linspace(-2, 2, 5))
    path = Path(out_dir) / "vae_traversals.png"
    plot_traversals(trav, cats, path, f"CascadeVAE, {cfg.steps} steps (tiny): latent traversals")
    rows.append(DemoRow("vae", "latent traversal plot", str(path), "", 0.0))
    return rows
