"""End-to-end learning of sparse hash codes with an exact solver in every minibatch (``specs/hash_flow.md`` §1-2).

Two stages, as in both papers:

1. **Metric stage** (:func:`train_metric`): trunk + embedding head trained with the semi-hard triplet loss. Its
   embeddings are the ones the hash table re-ranks with.
2. **Hash stage** (:func:`train_hash`): a fresh hash head on the trunk; every step computes the per-class mean
   activations of a class-balanced minibatch, solves for the optimal codes exactly with
   :func:`combax.solvers.assign.sparse_codes`, and takes an Adam step on the masked triplet loss with those codes.

Flat codes (paper A, ``levels=1``) take one solver call per minibatch:

.. math:: \\max_{z}\\ \\sum_p c_p^\\top z_p - \\lambda \\sum_{p<q} z_p^\\top z_q,\\quad z_p \\in \\{0,1\\}^d,\\ \\|z_p\\|_1 = k.

Compound codes (paper B, ``levels=K``) run the level-by-level cascade: level 1 is the problem above with k = 1; level
v > 1 adds the sibling penalty ``lam_group`` for classes with the same parent path (``groups=``), with k = s at the last
level. Each level is exact given the levels above it; the cascade is greedy across levels (spec §1.4).

The solver is called from inside the jitted step through :func:`jax.pure_callback` (one host round-trip per step,
one forward pass), or, with ``mode="host"``, between two jitted functions (forward for the class means, then a
second forward + backward with the codes). Both give the same codes; :mod:`benchmarks.hash_e2e` measures both.

Gradient semantics: none through the solver. Codes are constants for the step (the spec's "objective" input);
gradients flow only through the activations inside the masked loss.
"""

import time
from dataclasses import dataclass, field, replace

import jax
import jax.numpy as jnp
import numpy as np
import optax

from combax.models.embedding import EmbeddingConfig, EmbeddingNet, init_params, transplant_trunk
from combax.models.metric_losses import l2_normalize, masked_triplet_loss, triplet_loss

__all__ = [
    "HashConfig",
    "HashTrainResult",
    "CodeSolver",
    "class_balanced_batches",
    "class_means",
    "make_codes_fn",
    "make_train_step",
    "train_metric",
    "train_hash",
    "network_outputs",
]


@dataclass(frozen=True, slots=True)
class HashConfig:
    """Hash-stage settings.

    Attributes
    ----------
    k : active buckets per code (flat), or s at the last level (compound).
    d : buckets per level.
    lam : pairwise penalty lambda (unordered-pair convention of the spec; lambda_2 for compound codes).
    levels : 1 for flat codes, K >= 2 for compound codes.
    lam_group : sibling penalty lambda_1 for compound levels v > 1.
    margin : triplet margin alpha.
    lr, trunk_lr_scale, weight_decay : Adam learning rate of the hash head, the trunk's multiplier, and L2 weight
        decay on dense kernels.
    classes_per_batch, per_class : a minibatch is ``classes_per_batch`` classes x ``per_class`` images.
    steps : hash-stage steps.
    seed : sampler and initialisation seed.
    mode : "callback" (solver inside the jitted step via ``jax.pure_callback``) or "host" (solver between two jits).
    solver : "flow" (exact, :func:`combax.solvers.assign.sparse_codes`) or "topk" (per-class top-k computed in JAX,
        i.e. the lambda = 0 codes with no solver call; the throughput reference "without the solver").
    """

    k: int = 2
    d: int = 64
    lam: float = 1.0
    levels: int = 1
    lam_group: float = 100.0
    margin: float = 1.0
    lr: float = 1e-3
    trunk_lr_scale: float = 0.1
    weight_decay: float = 5e-4
    classes_per_batch: int = 10
    per_class: int = 12
    steps: int = 300
    seed: int = 0
    mode: str = "callback"
    solver: str = "flow"

    def __post_init__(self):
        _hash_config_iv(self)


def _hash_config_iv(c: HashConfig) -> None:
    for name in ("k", "d", "levels", "classes_per_batch", "steps"):
        v = getattr(c, name)
        if int(v) != v or v < 1:
            raise ValueError(f"`{name}` must be a positive integer; got {v!r}")
    if c.per_class < 2:
        raise ValueError(f"`per_class` must be at least 2 (triplets need a positive); got {c.per_class}")
    if c.k > c.d:
        raise ValueError(f"`k` must be at most `d` = {c.d} (feasibility of the code problem); got {c.k}")
    for name in ("lam", "lam_group", "margin", "weight_decay"):
        v = getattr(c, name)
        if not np.isfinite(v) or v < 0:
            raise ValueError(f"`{name}` must be finite and non-negative; got {v!r}")
    if c.mode not in ("callback", "host"):
        raise ValueError(f"`mode` must be 'callback' or 'host'; got {c.mode!r}")
    if c.solver not in ("flow", "topk"):
        raise ValueError(f"`solver` must be 'flow' or 'topk'; got {c.solver!r}")


# ----------------------------------------------------------------------------------------------- sampling


def class_balanced_batches(labels, classes_per_batch: int, per_class: int, *, seed: int = 0):
    """Endless class-balanced minibatches of database indices, class-major.

    Each batch draws ``classes_per_batch`` distinct classes uniformly at random and ``per_class`` distinct items of
    each (cycling through a fresh permutation of the class's items, so every item is seen once per class epoch).
    Yields (classes_per_batch * per_class,) int64 arrays; row-reshaping to (classes_per_batch, per_class) gives one
    class per row, so the in-batch labels are always ``np.repeat(np.arange(classes_per_batch), per_class)``.
    """
    labels = np.asarray(labels)
    classes = np.unique(labels)
    if classes_per_batch > classes.size:
        raise ValueError(
            f"`classes_per_batch` must be at most the {classes.size} classes present; got {classes_per_batch}"
        )
    members = [np.flatnonzero(labels == c) for c in classes]
    small = [int(c) for c, mem in zip(classes, members) if mem.size < per_class]
    if small:
        raise ValueError(f"`per_class` = {per_class} exceeds the size of class(es) {small}")
    rng = np.random.default_rng(seed)
    queues = [rng.permutation(m) for m in members]
    heads = [0] * classes.size
    while True:
        chosen = rng.choice(classes.size, size=classes_per_batch, replace=False)
        out = []
        for c in chosen:
            if heads[c] + per_class > queues[c].size:
                queues[c] = rng.permutation(members[c])
                heads[c] = 0
            out.append(queues[c][heads[c] : heads[c] + per_class])
            heads[c] += per_class
        yield np.concatenate(out).astype(np.int64)


def class_means(f, n_classes: int, per_class: int):
    """Per-class mean of class-major activations: (n_classes * per_class, ...) -> (n_classes, ...)."""
    return f.reshape(n_classes, per_class, *f.shape[1:]).mean(axis=1)


# ----------------------------------------------------------------------------------------------- codes


@dataclass(slots=True)
class CodeSolver:
    """Host-side exact code solver for one minibatch of class means, with a log of its wall time.

    ``__call__(means)`` takes (n_c, levels, d) float scores and returns (n_c, levels, d) float32 0/1 codes. Flat codes
    call :func:`combax.solvers.assign.sparse_codes` once; compound codes call it once per level (the cascade).
    """

    k: int
    lam: float
    levels: int = 1
    lam_group: float = 0.0
    seconds: list = field(default_factory=list)

    def __call__(self, means):
        from combax.solvers import assign

        t0 = time.perf_counter()
        means = np.asarray(means, dtype=np.float64)
        n_c, levels, d = means.shape
        out = np.zeros((n_c, levels, d), dtype=np.float32)
        parent = np.zeros(n_c, dtype=np.int64)
        for v in range(levels):
            last = v == levels - 1
            kv = self.k if last else 1
            if v == 0:
                z = assign.sparse_codes(means[:, 0], kv, self.lam)
            else:
                z = assign.sparse_codes(means[:, v], kv, self.lam, groups=parent, lam_group=self.lam_group)
            out[:, v] = z
            if not last:
                parent = parent * d + np.argmax(z, axis=1)
        self.seconds.append(time.perf_counter() - t0)
        return out


def make_codes_fn(solver: CodeSolver):
    """A jax-callable ``codes(means)`` that runs ``solver`` on the host via :func:`jax.pure_callback`.

    Works under ``jit``; under ``vmap`` it loops over the batch (``vmap_method="sequential"``). The result has the
    shape of ``means`` and dtype float32; no gradient flows through it.
    """

    def host(means):
        return solver(np.asarray(means))

    def codes(means):
        means = jax.lax.stop_gradient(means)
        shape = jax.ShapeDtypeStruct(means.shape, jnp.float32)
        return jax.pure_callback(host, shape, means, vmap_method="sequential")

    return codes


def _topk_codes(means, k):
    """Per-class top-k of the means (lambda = 0 optimum), in JAX: the no-solver reference."""
    _, idx = jax.lax.top_k(means, k)
    return jnp.sum(jax.nn.one_hot(idx, means.shape[-1], dtype=jnp.float32), axis=-2)


# ----------------------------------------------------------------------------------------------- training


def _optimizer(lr, trunk_scale, weight_decay, params):
    def label(path, _):
        top = path[1].key if len(path) > 1 else path[0].key
        return {"trunk": "trunk", "hash_head": "head", "embed_head": "frozen"}.get(top, "head")

    labels = jax.tree_util.tree_map_with_path(label, params)
    decay_mask = jax.tree_util.tree_map_with_path(
        lambda p, _: p[-1].key == "kernel" and not p[-2].key.startswith("Conv"), params
    )

    def adam(scale):
        return optax.chain(optax.add_decayed_weights(weight_decay, mask=decay_mask), optax.adam(lr * scale))

    return optax.multi_transform({"trunk": adam(trunk_scale), "head": adam(1.0), "frozen": optax.set_to_zero()}, labels)


def make_train_step(net: EmbeddingConfig, config: HashConfig, optimizer, codes_fn=None):
    """The hash-stage step as pure functions.

    Returns ``step(params, opt_state, x) -> (params, opt_state, loss, codes)`` for ``mode="callback"`` or
    ``solver="topk"`` (one jitted function; the solver runs inside it through ``codes_fn``), and for ``mode="host"``
    the pair ``(means_fn(params, x) -> means, update(params, opt_state, x, codes) -> (params, opt_state, loss))``.
    ``x`` is a class-major batch of ``classes_per_batch * per_class`` images.
    """
    model = EmbeddingNet(net)
    n_c, m, K, d = config.classes_per_batch, config.per_class, config.levels, config.d
    labels = jnp.repeat(jnp.arange(n_c), m)

    def activations(params, x):
        _, act = model.apply(params, x)
        return act.reshape(act.shape[0], K, d)

    def means_of(act):
        return class_means(l2_normalize(act), n_c, m)

    def masked_loss(act, codes):
        per_sample = jnp.repeat(codes, m, axis=0)
        return sum(masked_triplet_loss(act[:, v], per_sample[:, v], labels, config.margin) for v in range(K))

    def apply_update(params, opt_state, grads):
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    if config.mode == "callback" or config.solver == "topk":
        if config.solver == "topk":

            def get_codes(means):
                return jnp.stack([_topk_codes(means[:, v], config.k if v == K - 1 else 1) for v in range(K)], 1)

        else:
            get_codes = codes_fn

        def loss_fn(params, x):
            act = activations(params, x)
            codes = jax.lax.stop_gradient(get_codes(jax.lax.stop_gradient(means_of(act))))
            return masked_loss(act, codes), codes

        @jax.jit
        def step(params, opt_state, x):
            (loss, codes), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, x)
            params, opt_state = apply_update(params, opt_state, grads)
            return params, opt_state, loss, codes

        return step

    @jax.jit
    def means_fn(params, x):
        return means_of(activations(params, x))

    @jax.jit
    def update(params, opt_state, x, codes):
        loss, grads = jax.value_and_grad(lambda p: masked_loss(activations(p, x), codes))(params)
        params, opt_state = apply_update(params, opt_state, grads)
        return params, opt_state, loss

    return means_fn, update


@dataclass(frozen=True, slots=True)
class HashTrainResult:
    """Outcome of :func:`train_hash`.

    Attributes
    ----------
    params : trained network parameters (trunk, frozen embedding head, hash head).
    config : the :class:`HashConfig` used.
    losses : (steps,) masked loss per step.
    step_seconds : (steps,) wall time of each step (after the first, compile-including, step).
    solver_seconds : (steps,) wall time inside the solver per step (0 for ``solver="topk"``).
    codes : (classes_per_batch, levels, d) codes of the last minibatch.
    """

    params: object
    config: HashConfig
    losses: np.ndarray
    step_seconds: np.ndarray
    solver_seconds: np.ndarray
    codes: np.ndarray

    @property
    def steps_per_second(self) -> float:
        """Steady-state throughput: steps / second over all but the first (compiling) step."""
        s = self.step_seconds[1:]
        return float(len(s) / s.sum()) if s.size and s.sum() > 0 else float("nan")

    @property
    def solver_fraction(self) -> float:
        """Share of the steady-state step time spent in the solver."""
        s = self.step_seconds[1:]
        return float(self.solver_seconds[1:].sum() / s.sum()) if s.size and s.sum() > 0 else float("nan")


def _progress(iterable, total, desc, progress):
    if not progress:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False)


def train_metric(
    images,
    labels,
    net: EmbeddingConfig,
    *,
    steps: int = 600,
    lr: float = 1e-3,
    margin: float = 0.5,
    classes_per_batch: int = 10,
    per_class: int = 12,
    seed: int = 0,
    progress: bool = True,
):
    """Metric stage: Adam on the semi-hard triplet loss of the L2-normalised embedding. Returns (params, losses)."""
    images = np.asarray(images, dtype=np.float32)
    params = init_params(net, images.shape[1:], seed)
    model = EmbeddingNet(net)
    opt = optax.adam(lr)
    opt_state = opt.init(params)
    batch_labels = jnp.repeat(jnp.arange(classes_per_batch), per_class)

    @jax.jit
    def step(params, opt_state, x):
        def loss_fn(p):
            return triplet_loss(model.apply(p, x, method=EmbeddingNet.embed), batch_labels, margin)

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    batches = class_balanced_batches(labels, classes_per_batch, per_class, seed=seed)
    losses = []
    for _ in _progress(range(steps), steps, "metric stage", progress):
        params, opt_state, loss = step(params, opt_state, images[next(batches)])
        losses.append(float(loss))
    return params, np.asarray(losses)


def train_hash(images, labels, metric_params, net: EmbeddingConfig, config: HashConfig, *, progress: bool = True):
    """Hash stage: fresh hash head on the metric stage's trunk, exact codes per minibatch, masked triplet loss.

    ``net`` must have ``hash_dim == config.d`` and ``levels == config.levels``. Returns a :class:`HashTrainResult`
    with per-step wall time and solver time.
    """
    if net.hash_dim != config.d or net.levels != config.levels:
        raise ValueError(
            f"`net` must have hash_dim={config.d} and levels={config.levels} like `config`; "
            f"got hash_dim={net.hash_dim}, levels={net.levels}"
        )
    images = np.asarray(images, dtype=np.float32)
    params = transplant_trunk(init_params(net, images.shape[1:], config.seed + 1), metric_params)
    optimizer = _optimizer(config.lr, config.trunk_lr_scale, config.weight_decay, params)
    opt_state = optimizer.init(params)
    solver = CodeSolver(config.k, config.lam, config.levels, config.lam_group)
    batches = class_balanced_batches(labels, config.classes_per_batch, config.per_class, seed=config.seed)
    losses, step_s, solver_s = [], [], []
    codes = None
    host = config.mode == "host" and config.solver == "flow"
    if host:
        means_fn, update = make_train_step(net, config, optimizer)
    else:
        step = make_train_step(net, config, optimizer, make_codes_fn(solver))
    for _ in _progress(range(config.steps), config.steps, f"hash stage k={config.k}", progress):
        x = images[next(batches)]
        n_before = len(solver.seconds)
        t0 = time.perf_counter()
        if host:
            codes = solver(np.asarray(means_fn(params, x)))
            params, opt_state, loss = update(params, opt_state, x, jnp.asarray(codes))
        else:
            params, opt_state, loss, codes = step(params, opt_state, x)
        loss = float(loss)  # blocks until the step is done
        step_s.append(time.perf_counter() - t0)
        solver_s.append(sum(solver.seconds[n_before:]))
        losses.append(loss)
    return HashTrainResult(
        params, config, np.asarray(losses), np.asarray(step_s), np.asarray(solver_s), np.asarray(codes)
    )


def network_outputs(params, net: EmbeddingConfig, images, *, batch: int = 1000):
    """(embeddings (N, m), hash activations (N, levels d)) as float64 NumPy arrays, in batches."""
    model = EmbeddingNet(net)
    fwd = jax.jit(lambda p, x: model.apply(p, x))
    images = np.asarray(images, dtype=np.float32)
    embs, acts = [], []
    for i in range(0, images.shape[0], batch):
        e, a = fwd(params, images[i : i + batch])
        embs.append(np.asarray(e, dtype=np.float64))
        acts.append(np.asarray(a, dtype=np.float64))
    return np.concatenate(embs), np.concatenate(acts)


def with_steps(config: HashConfig, steps: int) -> HashConfig:
    """``config`` with a different step count (helper for CLI and benchmarks)."""
    return replace(config, steps=steps)
