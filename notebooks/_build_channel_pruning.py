"""Build notebooks/channel_pruning.ipynb with nbformat (outputs are filled by executing it).

Run from the repository root: ``python notebooks/_build_channel_pruning.py [--execute]``.
"""

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

CELLS = [
    (
        "md",
        r"""# Optimal channel selection: a discrete QCQP, solved exactly, on real networks

Channel pruning removes whole output channels of a conv and, with them, the matching input channels of every conv
that reads them. Jeong et al. ("Optimal channel selection with discrete QCQP", AISTATS 2022, arXiv 2202.12417) write
the selection as a binary quadratic program: with $u^{(l)}$ the kept outputs of conv $l$ and $v^{(s)}$ the kept
channels of the map it reads,

$$\max_{u, v \in \{0,1\}} \sum_l u^{(l)\top} I^{(l)} v^{(s_l)} \quad \text{s.t.} \quad
\sum_l c_l\, \lVert u^{(l)}\rVert_1 \lVert v^{(s_l)}\rVert_1 \;(+\text{linear terms}) \le B .$$

A weight survives only if **both** its output and its input channel survive: that is the quadratic coupling. This
notebook shows

1. the coupling and the *inactive weights* a per-layer (greedy) method keeps on a toy network;
2. the bound and the progress of combax's branch-and-bound on CIFAR ResNet-20's problem;
3. a prune-and-fine-tune run on a tiny ResNet (digits), with the resource recomputed from the pruned shapes.""",
    ),
    (
        "code",
        """import time

import matplotlib.pyplot as plt
import numpy as np

from combax.adapters import pruning as P
from combax.data import digits, stratified_split
from combax.models.classifier_train import TrainConfig, evaluate, fit, predict
from combax.models.resnet import conv_layout, resnet_cifar
from combax.solvers import channels

plt.rcParams["figure.dpi"] = 72""",
    ),
    (
        "md",
        r"""## 1. The quadratic coupling and inactive weights

A chain of three convs on maps of widths 3 (the input, always kept), 6, 6 and 4, 1x1 convs, integer importances.
The FLOPs of conv $l$ are $c_l\, n_l\, m_{l-1}$: they depend on *both* neighbouring counts.

The greedy (PFEC-style) method scores each filter by the norm of all its weights and keeps the top filters per layer.
Some of the weights it counts read channels that the previous layer has already dropped: they are **inactive**, they
add nothing to the network, and yet they were counted in the filter score. The QCQP counts only weights whose two
endpoints survive, so its objective is the true one and its resource is exact.""",
    ),
    (
        "code",
        """rng = np.random.default_rng(3)
widths = [3, 6, 6, 4]
mats = [rng.integers(0, 10, size=(widths[k + 1], widths[k])).astype(float) for k in range(3)]
convs = [(k, k + 1, mats[k]) for k in range(3)]
cost = [1.0, 1.0, 1.0]
full = sum(w1 * w0 for w0, w1 in zip(widths[:-1], widths[1:]))
prob = channels.ChannelProblem(widths, convs, cost, 0.45 * full)
best = channels.brute_force(prob)

# greedy: keep the same fraction of filters in every layer, by filter norm (inactive weights included)
keep_out = []
for k, m in enumerate(mats):
    n = max(1, int(round(0.6 * widths[k + 1])))
    mask = np.zeros(widths[k + 1], bool)
    mask[np.argsort(-m.sum(1), kind="stable")[:n]] = True
    keep_out.append(mask)
greedy_keep = [np.ones(3, bool), *keep_out]
ev = prob.evaluate(keep_out, greedy_keep)
believed = sum(m[u].sum() for m, u in zip(mats, keep_out))  # what the filter scores add up to
print(f"budget {prob.budget:.1f} FLOPs of {full}")
print(f"QCQP optimum (brute force): objective {best.objective:.0f}, FLOPs {best.resource:.0f}")
print(f"greedy: filter scores add up to {believed:.0f}, true objective {ev.objective:.0f}, FLOPs {ev.resource:.0f}"
      f" ({'within' if ev.resource <= prob.budget else 'OVER'} budget)")""",
    ),
    (
        "code",
        """def draw(ax, keep, keep_out, title, counts_inactive):
    \"\"\"Channels as dots (grey: pruned); lines: the weights the method counts (red dotted: inactive ones).\"\"\"
    xs = np.arange(len(widths))
    ys = [np.linspace(-(w - 1) / 2, (w - 1) / 2, w) for w in widths]
    inactive = 0
    for k, m in enumerate(mats):
        for j in np.flatnonzero(keep_out[k]):
            for i in range(widths[k]):
                alive = keep[k][i]
                if not alive and not counts_inactive:
                    continue
                inactive += not alive
                ax.plot([xs[k], xs[k + 1]], [ys[k][i], ys[k + 1][j]], color="C0" if alive else "C3",
                        ls="-" if alive else ":", lw=0.4 + m[j, i] / 6, alpha=0.8 if alive else 0.7)
    for t, w in enumerate(widths):
        ax.scatter(np.full(w, xs[t]), ys[t], s=120, c=["k" if x else "lightgrey" for x in keep[t]], zorder=3)
    ax.set_title(f"{title}\\n{inactive} inactive weights counted (red, dotted)")
    ax.set_xticks(xs, [f"map {t}" for t in xs])
    ax.set_yticks([])


fig, axes = plt.subplots(1, 2, figsize=(11, 4))
draw(axes[0], greedy_keep, keep_out, f"greedy filter norms: true objective {ev.objective:.0f}", True)
draw(axes[1], best.keep, best.keep_out, f"QCQP optimum: objective {best.objective:.0f}", False)
plt.tight_layout()
plt.show()""",
    ),
    (
        "md",
        r"""## 2. Bound and branch-and-bound progress on ResNet-20

The CIFAR ResNet-20 instance of the solver package (19 convs, zero-padding shortcuts with the OR constraint
$v_t = u_t \lor v_s$, synthetic weights, FLOPs budget 50 %) has about a thousand binaries and 30k bilinear terms.
combax's B&B bounds it by a Lagrangian relaxation solved with a DP over channel counts, with per-layer row/column
top-$k$ bounds. Its incumbent starts from the greedy heuristic of the original work, improved by local search and
by a window search (three consecutive maps re-solved by the same B&B, every other map fixed). The result carries no
progress trace, so we re-solve with growing time limits and plot the incumbent and the proven bound of each run;
the greedy heuristic is the dashed line.""",
    ),
    (
        "code",
        """r20 = channels.resnet_cifar(20, 0, ratio=0.5)
print(f"{r20.n_binaries} binaries, {r20.n_bilinear} bilinear terms")
channels.solve(r20, "bnb", node_limit=5)  # load the numba kernels first
limits = [0.25, 0.5, 1, 2, 4, 8]
runs = [channels.solve(r20, "bnb", time_limit=t) for t in limits]
greedy = channels.solve(r20, "greedy")
for t, s in zip(limits, runs):
    print(f"{t:5.2f} s: {s.status}, incumbent {s.objective:.4f}, bound {s.bound:.4f}, gap {s.gap:.2%}, "
          f"{s.n_nodes} nodes")

fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.6))
a.plot(limits, [s.bound for s in runs], "o-", label="proven upper bound")
a.plot(limits, [s.objective for s in runs], "s-", label="incumbent (feasible selection)")
a.axhline(greedy.objective, color="grey", ls="--", label="greedy heuristic")
a.set_xscale("log")
a.set_xlabel("time limit (s)")
a.set_ylabel("objective (kept importance)")
a.legend()
b.plot(limits, [100 * s.gap for s in runs], "o-")
b.set_xscale("log")
b.set_xlabel("time limit (s)")
b.set_ylabel("relative gap (%)")
for ax in (a, b):
    ax.set_xticks(limits, [f"{t:g}" for t in limits])
    ax.minorticks_off()
plt.tight_layout()
plt.show()""",
    ),
    (
        "md",
        r"""In tile units (groups of 8 channels, a common requirement for real speed-ups) the same network is small enough
for B&B to prove optimality, and the HiGHS MILP (F1 McCormick) agrees:""",
    ),
    (
        "code",
        """g8 = channels.resnet_cifar(20, 0, ratio=0.5, group_size=8)
bg = channels.solve(g8, "bnb", time_limit=30)
hg = channels.solve(g8, "highs", time_limit=30)
print(f"B&B   {bg.status}: {bg.objective:.6f} (bound {bg.bound:.6f}, {bg.seconds:.2f} s, {bg.n_nodes} nodes)")
print(f"HiGHS {hg.status}: {hg.objective:.6f} ({hg.seconds:.2f} s)")""",
    ),
    (
        "md",
        r"""## 3. Prune and fine-tune a tiny ResNet

A ResNet-8 of base width 8 trained for a few epochs on scikit-learn's 8x8 digits. `channel_problem` reads the maps,
the residual layout and the per-kernel L1 importance (normalised per layer) from the trained weights; the budget is
50 % of the FLOPs (classifier outside the optimisation). `prune` builds a physically smaller network whose logits equal
the masked network's and whose FLOPs, recomputed from the new kernel shapes, equal the solver's `resource`.""",
    ),
    (
        "code",
        """ds = digits()
tr, te = stratified_split(ds.labels, 0.2, seed=0)
x_tr, y_tr, x_te, y_te = ds.images[tr], ds.labels[tr], ds.images[te], ds.labels[te]
shape = x_tr.shape[1:]
model = resnet_cifar(8, base_width=8)
t0 = time.perf_counter()
variables = fit(model, x_tr, y_tr, TrainConfig(epochs=4, batch_size=64, lr=0.1, progress=False))
base_acc = evaluate(model, variables, x_te, y_te)
print(f"base: test accuracy {base_acc:.2%} ({time.perf_counter() - t0:.0f} s)")

prob = P.channel_problem(model, variables, "flops", 0.5, input_shape=shape)
sol = channels.solve(prob, "bnb", time_limit=10)
pruned = P.prune(model, variables, sol, input_shape=shape)
masked = predict(model, variables, x_te[:64], masks=P.masks_of(model, sol, shape))
print(f"B&B {sol.status}, gap {sol.gap:.2%}; max |pruned - masked| logit difference "
      f"{np.abs(predict(pruned.model, pruned.variables, x_te[:64]) - masked).max():.1e}")
print(f"FLOPs from the pruned shapes {pruned.resource['flops']:.0f} == solver {sol.resource:.0f} "
      f"<= budget {prob.budget:.0f}: {pruned.resource['flops'] == sol.resource <= prob.budget}")""",
    ),
    (
        "code",
        """ft = TrainConfig(epochs=3, batch_size=64, lr=0.02, warmup_steps=0, progress=False)
ours_before = evaluate(pruned.model, pruned.variables, x_te, y_te)
ours = P.finetune(pruned, x_tr, y_tr, ft)
g = P.greedy_l1(model, variables, 0.5, bookkeeping="exact", input_shape=shape)
gp = P.prune(model, variables, g, input_shape=shape)
greedy_before = evaluate(gp.model, gp.variables, x_te, y_te)
gt = P.finetune(gp, x_tr, y_tr, ft)
acc = {"base": base_acc, "ours (B&B)": evaluate(ours.model, ours.variables, x_te, y_te),
       "greedy L1": evaluate(gt.model, gt.variables, x_te, y_te)}
before = {"base": base_acc, "ours (B&B)": ours_before, "greedy L1": greedy_before}
for k in acc:
    print(f"{k:11s} before fine-tuning {before[k]:.2%}, after {acc[k]:.2%}")

fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.6))
maps = np.arange(len(sol.keep))
full_w = [shape[2]] + [c.c_out for c in conv_layout(model, shape)]
a.bar(maps - 0.27, full_w, 0.27, label="full", color="lightgrey")
a.bar(maps, [k.sum() for k in sol.keep], 0.27, label=f"ours: FLOPs {sol.resource / prob.full_resource:.0%}")
a.bar(maps + 0.27, [k.sum() for k in g.keep], 0.27, label=f"greedy: FLOPs {g.resource / prob.full_resource:.0%}")
a.set_xlabel("feature map")
a.set_ylabel("kept channels")
a.legend()
names = list(acc)
b.bar(np.arange(3) - 0.2, [100 * before[k] for k in names], 0.4, label="before fine-tuning")
b.bar(np.arange(3) + 0.2, [100 * acc[k] for k in names], 0.4, label="after fine-tuning")
b.set_xticks(np.arange(3), names)
b.set_ylabel("test accuracy (%)")
b.legend()
plt.tight_layout()
plt.show()""",
    ),
    (
        "md",
        r"""The end-to-end version, with ResNet-20 on MNIST-5k, onnxruntime latency and a fitted latency model
(`combax.adapters.latency_model`), is `combax channels prune --model resnet20 --data mnist5k --ratio 0.5` and
`benchmarks/pruning_e2e.py`.""",
    ),
]


def build() -> nbformat.NotebookNode:
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells = [new_markdown_cell(src) if kind == "md" else new_code_cell(src) for kind, src in CELLS]
    return nb


if __name__ == "__main__":
    nb = build()
    path = HERE / "channel_pruning.ipynb"
    if "--execute" in sys.argv:
        import nbclient

        nbclient.NotebookClient(nb, timeout=240, kernel_name="python3",
                                resources={"metadata": {"path": str(HERE.parent)}}).execute()  # fmt: skip
    nbformat.write(nb, path)
    print(f"wrote {path}")
