"""``combax emi``: PPO with and without an intrinsic reward (EMI, RND) on sparse-reward environments.

Runs one agent for a fixed budget over several seeds (one after the other through one compiled function, or all at
once under ``jax.vmap`` with ``--vmap``) and reports the fraction of seeds that reached the goal, the episodes (and
environment steps) to the first success and the final success rate.

Examples
--------
``combax emi run --env deepsea --size 14 --agent emi --seeds 5``
``combax emi run --env deepsea --size 10 --agent ppo --episodes 2000 --json``
``combax emi run --env mountaincar --agent rnd --seeds 3 --steps 200000``
"""

import argparse
import json
import time
from pathlib import Path

DEMO_ORDER = 60

AGENTS = ("ppo", "emi", "rnd")
ENVS = ("deepsea", "mountaincar")
_DEMO_SIZE = 10
_DEMO_SEEDS = 3
_DEMO_EPISODES = 4000


def register(subparsers) -> argparse.ArgumentParser:
    """Add ``combax emi`` with its ``run`` action; returns the ``emi`` parser."""
    p = subparsers.add_parser(
        "emi",
        help="exploration: PPO vs PPO + EMI vs PPO + RND on DeepSea / sparse MountainCar",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="emi_command", metavar="ACTION")
    r = sub.add_parser("run", help="train one agent over several seeds and report first successes")
    r.add_argument("--env", choices=ENVS, default="deepsea")
    r.add_argument("--size", type=int, default=10, help="DeepSea grid side N >= 2 (ignored for mountaincar)")
    r.add_argument("--agent", choices=AGENTS, default="emi")
    r.add_argument("--seeds", type=int, default=5, help="number of seeds 0..S-1")
    r.add_argument("--episodes", type=int, default=None, help="budget in episodes (default: 2000 on DeepSea)")
    r.add_argument("--steps", type=int, default=None, help="budget in environment steps (default 200000 on MC)")
    r.add_argument("--num-envs", type=int, default=32, help="parallel environments per seed")
    r.add_argument("--int-coef", type=float, default=None, help="weight of the intrinsic advantage")
    r.add_argument("--vmap", action="store_true", help="vmap over seeds (can hang on XLA CPU, see run_exploration)")
    r.add_argument("--json", action="store_true", help="print the summary as JSON")
    r.add_argument("--plot", default=None, help="write the success-rate learning curve to this file (.png)")
    r.set_defaults(func=_cmd_run)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
    return p


def validate_args(args) -> None:
    """Raise ``SystemExit`` with a message naming the argument, before anything is compiled."""
    if args.env == "deepsea" and args.size < 2:
        raise SystemExit(f"combax emi run: `--size` must be an integer >= 2 for deepsea; got {args.size}")
    if args.seeds < 1:
        raise SystemExit(f"combax emi run: `--seeds` must be >= 1; got {args.seeds}")
    if args.episodes is not None and args.steps is not None:
        raise SystemExit("combax emi run: give at most one of `--episodes` and `--steps`")
    if args.episodes is not None and args.episodes < 1:
        raise SystemExit(f"combax emi run: `--episodes` must be >= 1; got {args.episodes}")
    if args.steps is not None and args.steps < 1:
        raise SystemExit(f"combax emi run: `--steps` must be >= 1; got {args.steps}")
    if args.num_envs < 1:
        raise SystemExit(f"combax emi run: `--num-envs` must be >= 1; got {args.num_envs}")
    if args.int_coef is not None and args.int_coef < 0:
        raise SystemExit(f"combax emi run: `--int-coef` must be >= 0; got {args.int_coef}")
    if args.plot is not None and not Path(args.plot).parent.exists():
        raise SystemExit(f"combax emi run: `--plot` folder {str(Path(args.plot).parent)!r} does not exist")


def _cmd_run(args) -> int:
    validate_args(args)
    from combax.adapters.exploration import default_config, run_exploration
    from combax.envs import make_env

    env = make_env(args.env, args.size)
    config = default_config(args.agent, args.env, num_envs=args.num_envs, int_coef=args.int_coef)
    budget = {}
    if args.steps is not None:
        budget["total_steps"] = args.steps
    elif args.episodes is not None:
        budget["episodes"] = args.episodes
    elif args.env == "deepsea":
        budget["episodes"] = 2000
    else:
        budget["total_steps"] = 200_000
    res = run_exploration(env, config, seeds=args.seeds, progress=not args.json, vmap_seeds=args.vmap, **budget)
    summary = res.summary()
    if args.plot:
        plot_curves([res], args.plot)
        summary["plot"] = args.plot
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    solved = res.solved.sum()
    print(
        f"{res.agent} on {res.env}: {solved}/{len(res.seeds)} seeds solved within {summary['episodes_budget']} episodes"
    )
    print(f"  episodes to first success per seed: {summary['first_success_episode']} (-1 = never)")
    print(f"  median episodes to first success (solved seeds): {summary['median_first_success_episode']}")
    print(f"  env steps to first success per seed: {summary['first_success_step']}")
    rate = res.final_success_rate()
    print(f"  success rate over the last ~1000 episodes: {', '.join(f'{x:.2f}' for x in rate)}")
    print(f"  {res.seconds:.1f} s ({res.compile_seconds:.1f} s first chunk, incl. compilation)")
    return 0


def plot_curves(results, path, *, window: int = 5) -> None:
    """Success rate per update (moving average over ``window`` updates) against episodes, one line per agent."""
    import numpy as np
    from matplotlib.figure import Figure  # no pyplot: leaves the caller's backend alone

    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    for res in results:
        with np.errstate(invalid="ignore", divide="ignore"):
            rate = res.successes.sum(0) / np.maximum(res.n_episodes.sum(0), 1)
        k = min(window, len(rate))
        smooth = np.convolve(rate, np.ones(k) / k, mode="valid")
        x = res.episodes.mean(0)[k - 1 :]
        ax.plot(x, smooth, label=f"{res.agent} ({res.solved.sum()}/{len(res.seeds)} seeds solved)")
    ax.set_xlabel("episodes (per seed)")
    ax.set_ylabel("success rate (mean over seeds)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(results[0].env if results else "")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def demo(out_dir: Path) -> list:
    """DeepSea N = 10 (randomised actions), 3 seeds, 4000 episodes: PPO and PPO + EMI, with a learning-curve plot."""
    from combax.adapters.exploration import default_config, run_exploration
    from combax.demo import DemoRow
    from combax.envs import DeepSea

    env = DeepSea(_DEMO_SIZE)
    results, rows = [], []
    for agent in ("ppo", "emi"):
        t0 = time.perf_counter()
        res = run_exploration(
            env, default_config(agent, "deepsea"), seeds=_DEMO_SEEDS, episodes=_DEMO_EPISODES, progress=False
        )
        results.append(res)
        med = res.median_first_success_episode()
        fse = [int(x) for x in res.first_success_episode]
        rows.append(
            DemoRow(
                "emi",
                f"DeepSea N={_DEMO_SIZE}, {agent}, {_DEMO_SEEDS} seeds x {int(res.episodes[0, -1])} episodes",
                f"solved {res.solved.sum()}/{len(res.seeds)}, median episodes to first success "
                + ("-" if med != med else f"{med:.0f}")
                + f", last-1k success rate {float(res.final_success_rate().mean()):.2f}",
                f"first successes {fse} (-1 never); dithering would need ~2^{_DEMO_SIZE} episodes",
                time.perf_counter() - t0,
            )
        )
    try:
        plot_curves(results, Path(out_dir) / "emi_deepsea.png")
    except ImportError:
        pass
    return rows
