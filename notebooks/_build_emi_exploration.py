"""Build notebooks/emi_exploration.ipynb (run from the repository root)."""

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

cells = []
md = lambda s: cells.append(new_markdown_cell(s.strip()))  # noqa: E731
code = lambda s: cells.append(new_code_cell(s.strip()))  # noqa: E731

md(r"""
# EMI: exploration with mutual information, on DeepSea

This notebook shows, on small runs that take seconds to a minute on a CPU:

1. **why dithering fails on DeepSea**: a uniformly random policy finds the treasure with probability exactly
   $2^{-N}$ per episode, so the expected number of episodes before the first success grows as $2^N$;
2. **the EMI embedding space**: the state embedding $\phi$ and action embedding $\psi$ are trained so that
   $\phi(s') \approx \phi(s) + \psi(a)$ (linear dynamics, plus a small error model $\alpha(s, a)$), with
   Jensen-Shannon mutual-information terms; the intrinsic reward is the prediction error
   $\eta \lVert \phi(s') - \phi(s) - \psi(a) - \alpha(s, a) \rVert^2$;
3. **learning curves** of PPO, PPO + EMI and PPO + RND on one DeepSea size.

Reference: H. Kim et al., "EMI: Exploration with Mutual Information", ICML 2019, arXiv:1810.01176. The spec is
`specs/emi.md`; the full comparison is `benchmarks/emi.py` (results in `benchmarks/results/emi.md`).
""")

code(r"""
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
import itertools
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from combax.adapters.exploration import default_config, run_exploration
from combax.envs import DeepSea
from combax.models.emi import EMINetworks
""")

md(r"""
## 1. Dithering on DeepSea

The agent starts top-left and falls one row per step; each step it moves one column left or right. With the
randomised action mapping, *which* action means "right" is drawn per cell. The treasure (bottom-right) needs N
right moves in a row, and every right move costs $0.01/N$, so a policy that has never seen the treasure learns to go
left. We check the $2^{-N}$ claim two ways: exhaustively over all $2^N$ open-loop action sequences (exactly one
succeeds), and by simulating many uniformly random episodes at once (the env is pure JAX, so it vmaps).
""")

code(r"""
def count_successful_sequences(n):
    env = DeepSea(n)
    params = env.default_params(jax.random.PRNGKey(0))
    step = jax.jit(env.step)
    hits = 0
    for seq in itertools.product((0, 1), repeat=n):
        _, s = env.reset(None, params)
        ok = False
        for a in seq:
            out = step(None, s, jnp.int32(a), params)
            s, ok = out.state, ok or bool(out.success)
        hits += ok
    return hits


for n in (3, 5, 7):
    print(f"N={n}: {count_successful_sequences(n)} of {2**n} action sequences reach the treasure")
""")

code(r"""
def random_policy_success_rate(n, episodes, seed=0):
    env = DeepSea(n)
    params = env.default_params(jax.random.PRNGKey(seed))

    def episode(key):
        _, s = env.reset(key, params)

        def body(s, k):
            out = env.step(k, s, jax.random.bernoulli(k).astype(jnp.int32), params)
            return out.state, out.success

        _, succ = jax.lax.scan(body, s, jax.random.split(key, n))
        return succ.any()

    keys = jax.random.split(jax.random.PRNGKey(seed + 1), episodes)
    return float(jax.jit(jax.vmap(episode))(keys).mean())


sizes = np.arange(2, 13)
rates = [random_policy_success_rate(int(n), 200_000) for n in sizes]
fig, ax = plt.subplots(figsize=(5, 3))
ax.semilogy(sizes, rates, "o", label="uniform random policy (200k episodes)")
ax.semilogy(sizes, 2.0 ** -sizes, "-", label="$2^{-N}$")
ax.set_xlabel("N")
ax.set_ylabel("P(success) per episode")
ax.legend()
plt.show()
for n in (10, 14, 20):
    print(f"N={n}: a dithering agent needs ~{2**n:,} episodes on average for its first success")
""")

md(r"""
## 2. Training the agents

`run_exploration` runs PPO (purejaxrl style: rollout, intrinsic reward, bonus update, GAE and PPO update all under one
`jit` with `lax.scan`) for a fixed budget, for several seeds through one compiled function. The intrinsic reward is computed with the bonus
networks from *before* the iteration's update, normalised by a running std of its discounted return, and enters
through a separate intrinsic value head. Small run: DeepSea N = 8, 2 seeds, ~1200 episodes per seed. For the
embedding plot EMI uses d = 2 (the paper's choice, also the default of the CLI and the benchmark).
""")

code(r"""
N, SEEDS, EPISODES = 8, 2, 1200
env = DeepSea(N)
results = {}
t0 = time.perf_counter()
results["ppo"] = run_exploration(env, default_config("ppo"), seeds=SEEDS, episodes=EPISODES, progress=False)
print(f"ppo: first success per seed {results['ppo'].first_success_episode} ({time.perf_counter() - t0:.0f} s)")
""")

code(r"""
t0 = time.perf_counter()
emi_cfg = default_config("emi")  # d = 2, lam_err = 0.01 (see section 3)
results["emi"] = run_exploration(env, emi_cfg, seeds=SEEDS, episodes=EPISODES, progress=False)
print(f"emi: first success per seed {results['emi'].first_success_episode} ({time.perf_counter() - t0:.0f} s)")
""")

code(r"""
t0 = time.perf_counter()
results["rnd"] = run_exploration(env, default_config("rnd"), seeds=SEEDS, episodes=EPISODES, progress=False)
print(f"rnd: first success per seed {results['rnd'].first_success_episode} ({time.perf_counter() - t0:.0f} s)")
""")

md(r"""
## 3. The embedding space

$\phi$ of every reachable cell of the grid, from the trained EMI networks of seed 0, coloured by column (left) and
by row (right), and $\psi$ of the two actions (printed). Only $\psi$ has a prior (the KL term fixes its scale), so
after a short run $\phi$ is small and only loosely ordered; the prediction error is what drives exploration. Cells
the agent has never reached keep their random first-layer weights, so
transitions into them are predicted badly: their prediction error (the intrinsic reward) is high. With the
randomised action mapping the effect of an action depends on the cell, which the global $\psi(a)$ cannot express:
the error model $\alpha(s, a)$ has to absorb it. With the original's heavy penalty $\lambda_{err} = 100$ on
$\lVert\alpha\rVert^2$ the error stays large on familiar transitions too and drowns the novelty signal (0/5 seeds
solved DeepSea N = 14 in the benchmark); combax's default for DeepSea is $\lambda_{err} = 0.01$. The heat map below
shows the error of the "right" move out of every reachable cell after the short run.
""")

code(r"""
bonus = jax.tree_util.tree_map(lambda x: x[0], results["emi"].final_state.bonus)
net = EMINetworks(emi_cfg.emi)
cells = jnp.eye(N * N)
acts = jnp.eye(2)
out = net.apply(bonus.params, cells, jnp.tile(acts[:1], (N * N, 1)), cells)
phi = np.asarray(out.phi)
psi = np.asarray(net.apply(bonus.params, cells[:2], acts, cells[:2]).psi)
rows, cols = np.divmod(np.arange(N * N), N)
valid = cols <= rows  # cells reachable at all
fig, axes = plt.subplots(1, 2, figsize=(9, 4))
for ax, c, name in zip(axes, (cols, rows), ("column", "row")):
    sc = ax.scatter(phi[valid, 0], phi[valid, 1], c=c[valid], cmap="viridis", s=40)
    ax.set_title(f"phi(s), colour = {name}")
    fig.colorbar(sc, ax=ax)
plt.tight_layout()
plt.show()
print("psi(action 0) =", psi[0].round(3), " psi(action 1) =", psi[1].round(3))
""")

code(r"""
# prediction error (the intrinsic reward before normalisation) of the "right" transition out of every cell
params = results["emi"].final_state.env_params
mapping = np.asarray(params.action_mapping[0])
err = np.full((N, N), np.nan)
for r in range(N - 1):
    for c in range(r + 1):
        s = np.zeros(N * N, np.float32)
        s[r * N + c] = 1
        a = int(mapping[r, c])
        s2 = np.zeros(N * N, np.float32)
        s2[(r + 1) * N + min(c + 1, N - 1)] = 1
        o = net.apply(bonus.params, s[None], acts[a][None], s2[None])
        err[r, c] = float(jnp.sum((o.phi_next - o.phi - o.psi - o.alpha) ** 2))
plt.figure(figsize=(4, 3.5))
plt.imshow(np.log10(err), cmap="magma")
plt.colorbar(label="log10 prediction error")
plt.title("EMI error of the right move, per cell")
plt.xlabel("column")
plt.ylabel("row")
plt.show()
""")

md(r"""
## 4. Learning curves

Success rate per update (mean over seeds, moving average) against episodes. On a size this small a lucky dithering
episode can be enough for PPO ($2^{-8}$ per episode, and 32 episodes run in parallel); the intrinsic rewards are
meant to matter as N grows. The 5-seed comparison at N = 10, 14, 20 is in `benchmarks/results/emi.md`: read it
before drawing conclusions from two seeds.
""")

code(r"""
from combax.commands.emi import plot_curves

plot_curves(list(results.values()), "curves.png")
from IPython.display import Image

Image("curves.png")
""")

code(r"""
for name, res in results.items():
    print(
        f"{name}: solved {res.solved.sum()}/{len(res.seeds)} seeds, first success {res.first_success_episode}, "
        f"last-1k success rate {np.round(res.final_success_rate(), 2)}"
    )
""")

nb = new_notebook(
    cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
)
nbformat.write(nb, "notebooks/emi_exploration.ipynb")
print("wrote notebooks/emi_exploration.ipynb")
