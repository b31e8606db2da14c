"""Build notebooks/cascade_vae.ipynb with nbformat (outputs are filled by executing it).

Run from the repository root: ``python notebooks/_build_cascade_vae.py [--execute]``.
"""

import sys
from pathlib import Path

import nbformat as nbf

HERE = Path(__file__).resolve().parent

cells = []
md = lambda s: cells.append(nbf.v4.new_markdown_cell(s.strip()))  # noqa: E731
code = lambda s: cells.append(nbf.v4.new_code_cell(s.strip()))  # noqa: E731

md(r"""
# CascadeVAE: a cascade of betas and an exact discrete step

Jeong & Song, *Learning discrete and continuous factors of data via alternating disentanglement*, ICML 2019
(arXiv:1905.09432); `specs/cascade_vae.md`. A VAE on dSprites with

* **continuous latents** $z \in \mathbb R^m$ with a factorised Gaussian posterior, each with its own $\beta_j(t)$;
* a **discrete latent** $d \in \{e_1,\dots,e_S\}$ with *no encoder head*: it is chosen for every minibatch by an
  exact combinatorial step (a min-cost flow), then the network takes a gradient step with $d$ fixed.

This notebook goes: why a cascade (total correlation) → the schedule → the discrete step on a tiny instance, brute
force against the solver → a tiny training run (seconds) → latent traversals and the FactorVAE metric.
""")

md(r"""
## 1. Why a cascade minimises total correlation

With a factorised posterior $q(z|x) = \prod_j q(z_j|x)$, the mutual informations add up to

$$\sum_j I(x; z_j) - I(x; z) = \mathrm{TC}(z) = \mathrm{KL}\Big(q(z)\,\Big\|\,\prod_j q(z_j)\Big),$$

the total correlation of the aggregate posterior: how far the code is from independent dimensions. Each
per-dimension KL term of the ELBO bounds one of these informations,

$$\mathbb E_x\, \mathrm{KL}\big(q(z_j|x)\,\|\,\mathcal N(0,1)\big) \;\ge\; I(x; z_j),$$

so a large $\beta_j$ chokes the information that can pass through $z_j$. CascadeVAE starts with every dimension at
$\beta_h = 10$ and every $r$ steps switches **one more** dimension to $\beta_l = 0.1$. Information enters one
dimension at a time: each newly opened dimension picks up the factor that explains most of the remaining
reconstruction, while the closed ones stay at the prior, which keeps $\sum_j I(x;z_j)$, and with it the total
correlation, small. No discriminator, no importance sampling.
""")

code(r"""
import itertools
import time

import matplotlib.pyplot as plt
import numpy as np

from combax.models.cascade_vae import CascadeSchedule

t = np.arange(0, 300_000, 500)
fig, ax = plt.subplots(figsize=(7, 2.8))
for kind, m in (("cascade", 6), ("cascade-c", 10)):
    s = CascadeSchedule(kind, m)  # the original: r = 20,000, beta_h = 10, beta_l = 0.1
    ax.step(t / 1000, [s.n_open(x) for x in t], where="post", label=f"{kind} (m = {m})")
s = CascadeSchedule("cascade", 6)
ax.axvline(s.warmup_stages * s.interval / 1000, color="gray", ls=":", label="discrete step switches on (80k)")
ax.set_xlabel("iteration (thousands)")
ax.set_ylabel("dimensions at beta_low")
ax.legend(fontsize=8)
ax.set_title("The cascade of the original dSprites script")
fig.tight_layout()
print("betas of CascadeVAE at 50k:", s.betas(50_000))
""")

md(r"""
## 2. The discrete step is a min-cost flow

After the warm-up, for a minibatch of $n$ images: draw one $\varepsilon$, decode every pair $(z_i, e_k)$ and take
the unary cost $u_{ik}$ = summed pixel BCE ($S$ decoder passes). Then choose the categories by

$$\min_{l \in \{1..S\}^n}\; \sum_i u_{i,l_i} + \lambda \sum_k \frac{n_k(n_k-1)}{2},\qquad n_k = |\{i: l_i = k\}|.$$

The pair term is a convex penalty on crowding one category (a *soft* push to balance). Because it is convex in
the counts, the problem is a min-cost flow: source → sample $i$ (capacity 1) → category $k$ (cost $u_{ik}$) → sink
through $n$ unit arcs of costs $0, \lambda, 2\lambda, \dots$ The cheap arcs fill first, which reproduces the penalty
exactly, and an integral optimal flow is an optimal labelling. combax solves it with `assign.balanced_labels` (the
$k = 1$ member of the sparse-code family, a successive-shortest-path kernel in numba), once per minibatch.

On a tiny instance we can enumerate all $S^n$ labellings and compare: brute force, `balanced_labels`, the
slot-expanded Hungarian algorithm (scipy), and OR-Tools' min-cost flow when it is installed. We compare objective
values, not argmins (ties).
""")

code(r"""
from combax.solvers import assign


def objective(u, labels, lam):
    counts = np.bincount(labels, minlength=u.shape[1]).astype(float)
    return u[np.arange(len(labels)), labels].sum() + lam * (counts * (counts - 1) / 2).sum()


rng = np.random.default_rng(0)
n, S = 7, 3
u = 100 + rng.normal(size=(n, S))  # costs in the hundreds of nats, categories close
u[:, 0] -= 1.5  # category 0 is cheaper for most samples: lam decides how far to spread them
for lam in (0.0, 0.2, 1.0, 5.0):
    t0 = time.perf_counter()
    brute = min(itertools.product(range(S), repeat=n), key=lambda l: objective(u, np.array(l), lam))
    t_brute = time.perf_counter() - t0
    row = {"brute force": float(objective(u, np.array(brute), lam))}
    for backend in ("numba", "scipy", "ortools"):
        try:
            row[backend] = float(objective(u, assign.balanced_labels(u, lam, backend=backend), lam))
        except ImportError:
            row[backend] = float("nan")
    labels = assign.balanced_labels(u, lam)
    print(
        f"lam = {lam:3}: counts {np.bincount(labels, minlength=S)}, objectives",
        {k: round(v, 6) for k, v in row.items()},
        f"(brute force {1e3 * t_brute:.0f} ms over {S**n} labellings)",
    )
    assert abs(row["numba"] - row["brute force"]) < 1e-9 and abs(row["scipy"] - row["brute force"]) < 1e-9
print("lam = 0 is the per-sample argmin:", np.array_equal(assign.balanced_labels(u, 0.0), u.argmin(axis=1)))
""")

md(r"""
The brute force grows as $S^n$; the flow does not. At the training size ($n = 64$, $S = 3$) the solver takes
about a millisecond:
""")

code(r"""
u64 = 300 + 5 * rng.normal(size=(64, 3))
assign.balanced_labels(u64, 1e-3)  # load the numba cache
t0 = time.perf_counter()
for _ in range(100):
    assign.balanced_labels(u64, 1e-3)
print(f"balanced_labels on 64 x 3 costs: {1e3 * (time.perf_counter() - t0) / 100:.2f} ms per call")
""")

md(r"""
## 3. A tiny training run

The same loop trains CascadeVAE, CascadeVAE-C and beta-VAE (`combax.adapters.vae.train`). Here: CascadeVAE on
16x16 procedural dSprites, small widths, 300 steps with a cascade interval of 12 steps (so the discrete step
switches on at step 48 and all six dimensions are open from step 72). It is far too short to disentangle anything; it shows
the mechanics and the cost split of a step. The benchmark (`benchmarks/cascade_vae.py`) runs the comparison.
""")

code(r"""
from combax.adapters.vae import TrainConfig, latent_traversals, train

cfg = TrainConfig(
    model="cascade",
    steps=300,
    interval=12,
    image_size=16,
    batch_size=32,
    conv_features=(8, 8, 16, 16),
    hidden=64,
    learning_rate=3e-3,
    seed=0,
)
res = train(cfg, progress=False)
print(f"{res.seconds:.1f} s (compilation included); discrete step on {res.n_discrete_steps} steps")
print(
    f"per step: {1e3 * res.step_seconds:.1f} ms, of which the solver {1e3 * res.solver_seconds:.2f} ms "
    f"({100 * res.discrete_share:.2f}%) and the S decoder passes for the costs {100 * res.unary_share:.0f}%"
)

sched = cfg.schedule()
fig, axes = plt.subplots(1, 2, figsize=(10, 3))
axes[0].plot(res.recon)
axes[0].set_title("reconstruction (nats)")
axes[1].plot(res.kl)
axes[1].set_title("KL per dimension")
for ax in axes:
    ax.set_xlabel("step")
    for p in range(1, 8):
        ax.axvline(p * sched.interval, color="gray", lw=0.5, ls=":")
fig.tight_layout()
""")

md(r"""
## 4. Latent traversals

Encode one image (test time: $\varepsilon = 0$, category = argmin of the unary costs, no balance term), then
decode with one dimension swept from −2 to 2 at a time. The last row decodes the same $z$ under each category.
""")

code(r"""
from combax.commands.vae import plot_traversals
from combax.data.dsprites import dsprites

ds = dsprites(16)
image = ds.render(np.array([[0, 2, 5, 0, 16, 16]]))[0]  # a large heart in the centre
trav, cats = latent_traversals(res.params, cfg, image, values=np.linspace(-2, 2, 7))
fig = plot_traversals(trav, cats, title="CascadeVAE after 300 tiny steps")
""")

md(r"""
## 5. The FactorVAE metric

For a vote on factor $k$: fix $k$, draw a batch with the other factors random, normalise each dimension's variance in
the batch by its global variance, and give the vote to the argmin dimension (the discrete latent counts as one more
dimension, with the Gini-type variance). A majority-vote classifier maps dimensions to factors; the score is its
accuracy. Two sanity checks on synthetic codes, then the tiny model (small vote counts):
""")

code(r"""
from combax.adapters import disentanglement as dis
from combax.adapters.vae import evaluate

sizes = dis.DSPRITES_FACTOR_SIZES
noise_rng = np.random.default_rng(1)


def perfect(cls):  # each factor copied into one dimension
    return np.asarray(cls, float), None


def noise(cls):  # five dimensions of pure noise
    return noise_rng.normal(size=(len(cls), 5)), None


for name, rep in (("perfect", perfect), ("noise", noise)):
    orig = dis.factor_vae_score(rep, sizes, n_votes=400, seed=0).score
    dlib = dis.factor_vae_score(rep, sizes, variant="dlib", n_votes=1000, n_eval_votes=500, seed=0).score
    print(f"{name:8s} original {orig:.3f}   dlib {dlib:.3f}   (1 / 5 = 0.2)")

ev = evaluate(res.params, cfg, n_global=500, n_votes=50, dlib_votes=(50, 50), n_shape=500, vote_batch=32)
print(
    f"tiny CascadeVAE: FactorVAE {ev.factor_vae:.2f} (original), {ev.factor_vae_dlib:.2f} (dlib); "
    f"shape accuracy of the discrete latent {ev.shape_accuracy:.2f} (chance 0.33); "
    f"{int(ev.active.sum())} active dimensions (mean KL {np.round(ev.mean_kl, 2)})"
)
""")

md(r"""
Dimensions whose mean KL stays below 0.1 nats are not active and take no votes; with none active, only the
discrete latent votes. At this size the numbers are noise; see `benchmarks/results/cascade_vae.md` for the seeded comparison and its scale.
""")

nb = nbf.v4.new_notebook()
nb.cells = cells
nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
path = HERE / "cascade_vae.ipynb"
if "--execute" in sys.argv:
    import nbclient

    nbclient.NotebookClient(
        nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(HERE.parent)}}
    ).execute()
nbf.write(nb, path)
print(f"wrote {path}")
