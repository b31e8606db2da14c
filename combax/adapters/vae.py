"""CascadeVAE training: the alternating step (exact discrete inference per minibatch, then a gradient step) and
test-time category inference.

Per train step after the warm-up (``specs/cascade_vae.md`` §2):

1. one jitted call draws z = mu + sigma * eps with a shared eps and decodes every (z_i, e_k): unary costs u (n, S);
2. one host call ``assign.balanced_labels(u, lam)`` returns the exact
   ``argmin_l sum_i u[i, l_i] + lam * sum_k n_k (n_k - 1) / 2`` (a min-cost flow; no gradient through it);
3. one jitted Adam step on the encoder and decoder with d = one_hot(labels) and the same eps.

beta-VAE and CascadeVAE-C go through the same loop with no discrete latent. Every phase is timed separately, so the
result says what share of a training step the discrete step (the solver call) takes.
"""

import functools
import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

ModelName = Literal["cascade", "cascade-c", "betavae"]


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """One training run.

    Attributes
    ----------
    model : "cascade" (m = 6 continuous + S = 3 categories, cascade schedule), "cascade-c" (m = 10, cascade, no
        discrete latent) or "betavae" (m = 10, beta = 4 on every dimension).
    steps : int, number of Adam steps (the original: 300,000).
    interval : int or None, the cascade's r; None scales the original timeline to ``steps`` (r = steps / 15, so
        300k steps give r = 20k, the original).
    image_size : int, dSprites side (64 original; 32 for small runs).
    batch_size, learning_rate, lam (lambda of the balance term, 0.001), seed.
    n_continuous : int or None, m; None is the model's default (6 for "cascade", 10 otherwise).
    beta : float, the single beta of "betavae" (4, the third-party baseline setting).
    beta_low : float, the beta of the open dimensions of the cascade models (the original: 0.1; the third-party
        re-implementation: 2).
    conv_features, hidden : the network widths (the original: (32, 32, 64, 64) and 256).
    """

    model: ModelName = "cascade"
    steps: int = 3000
    interval: int | None = None
    image_size: int = 32
    batch_size: int = 64
    learning_rate: float = 1e-3
    lam: float = 1e-3
    seed: int = 0
    n_continuous: int | None = None
    beta: float = 4.0
    beta_low: float = 0.1
    conv_features: tuple[int, int, int, int] = (32, 32, 64, 64)
    hidden: int = 256

    def __post_init__(self):
        if self.model not in ("cascade", "cascade-c", "betavae"):
            raise ValueError(f"`model` must be 'cascade', 'cascade-c' or 'betavae'; got {self.model!r}")
        if self.steps < 1:
            raise ValueError(f"`steps` must be at least 1; got {self.steps}")
        if self.batch_size < 2:
            raise ValueError(f"`batch_size` must be at least 2; got {self.batch_size}")
        if not self.lam >= 0:  # also rejects nan
            raise ValueError(f"`lam` must be non-negative; got {self.lam}")
        if not self.learning_rate > 0:
            raise ValueError(f"`learning_rate` must be positive; got {self.learning_rate}")
        if not self.beta_low >= 0:  # also rejects nan
            raise ValueError(f"`beta_low` must be non-negative; got {self.beta_low}")
        if self.interval is not None and self.interval < 1:
            raise ValueError(f"`interval` must be at least 1 or None (scaled to `steps`); got {self.interval}")
        if self.n_continuous is not None and self.n_continuous < 1:
            raise ValueError(
                f"`n_continuous` must be at least 1 or None (the model's default); got {self.n_continuous}"
            )
        self.vae_config()  # validates image_size, conv_features, hidden

    def vae_config(self):
        from combax.models.cascade_vae import VAEConfig

        m = self.n_continuous or (6 if self.model == "cascade" else 10)
        return VAEConfig(
            image_size=self.image_size,
            n_continuous=m,
            n_categories=3 if self.model == "cascade" else 0,
            conv_features=tuple(self.conv_features),
            hidden=self.hidden,
        )

    def schedule(self):
        from combax.models.cascade_vae import CascadeSchedule

        r = self.interval or max(1, self.steps // 15)
        return CascadeSchedule(
            self.model, self.vae_config().n_continuous, interval=r, beta=self.beta, beta_low=self.beta_low
        )


@dataclass(frozen=True, slots=True)
class TrainResult:
    """A trained model and how the time went.

    Attributes
    ----------
    params : the Flax parameter pytree at the last step (no checkpoint selection).
    config : the :class:`TrainConfig`.
    loss, recon : (steps,) float per step; kl : (steps, m) per-dimension KL.
    step_seconds : mean wall time of a full training step (unary costs + solver + gradient step, data excluded) over
        the steps with a discrete step, the first one excluded (it loads the solver's numba cache).
    solver_seconds : mean time of the ``assign.balanced_labels`` call over the same steps.
    unary_seconds : mean time of the S decoder passes (with the host transfer) over the same steps.
    discrete_share : solver time / step time over the steps with a discrete step (nan if none ran).
    unary_share : unary-cost time / step time over the same steps.
    n_discrete_steps : number of steps that ran the discrete step.
    seconds : total wall time, data generation included.
    first_solver_seconds : the first solver call (numba cache load), excluded from the means.
    history : free-form extras.
    """

    params: object
    config: TrainConfig
    loss: np.ndarray
    recon: np.ndarray
    kl: np.ndarray
    step_seconds: float
    solver_seconds: float
    unary_seconds: float
    discrete_share: float
    unary_share: float
    n_discrete_steps: int
    seconds: float
    first_solver_seconds: float = float("nan")
    history: dict = field(default_factory=dict)


@functools.lru_cache(maxsize=8)
def _unary_fn(vcfg):
    """The jitted unary-cost function of one architecture, built once per process (training and inference share it)."""
    from combax.models import cascade_vae as cv

    return cv.make_unary_fn(cv.VAE(vcfg))


@functools.lru_cache(maxsize=8)
def _train_fns(vcfg, learning_rate: float):
    """(optimizer, jitted step, jitted unary) for one architecture, built once per process so that several seeds of
    the same model share one compilation."""
    from combax.models import cascade_vae as cv

    opt = cv.make_optimizer(learning_rate)
    return opt, cv.make_train_step(cv.VAE(vcfg), opt), _unary_fn(vcfg)


@functools.lru_cache(maxsize=8)
def _encode_fns(vcfg):
    """(jitted encode, jitted unary or None) for one architecture, built once per process."""
    from combax.models import cascade_vae as cv

    return cv.make_encode_fn(cv.VAE(vcfg)), (_unary_fn(vcfg) if vcfg.n_categories else None)


def discrete_step(u: np.ndarray, lam: float) -> np.ndarray:
    """(n,) labels minimising ``sum_i u[i, l_i] + lam * sum_k n_k (n_k - 1) / 2``, exactly (one solver call)."""
    from combax.solvers import assign

    return np.asarray(assign.balanced_labels(u, lam), dtype=np.int64)


def train(config: TrainConfig, *, progress: bool = True, dataset=None) -> TrainResult:
    """Train ``config.model`` on procedural dSprites with the alternating step; returns the last parameters.

    Gradient semantics: the labels are a constant of the gradient step (alternating minimisation, no gradient
    through the solver). Determinism: ``config.seed`` fixes the initial parameters, the minibatches and eps.
    """
    import jax
    import jax.numpy as jnp
    from tqdm.auto import tqdm

    from combax.data.dsprites import dsprites
    from combax.models import cascade_vae as cv

    t_start = time.perf_counter()
    vcfg, sched = config.vae_config(), config.schedule()
    ds = dataset if dataset is not None else dsprites(config.image_size)
    if ds.size != config.image_size:
        raise ValueError(f"`dataset` renders {ds.size}x{ds.size} images; `config.image_size` is {config.image_size}")
    opt, step_fn, unary_fn = _train_fns(vcfg, float(config.learning_rate))
    params = cv.init_params(vcfg, config.seed)
    opt_state = opt.init(params)
    rng = np.random.default_rng(config.seed + 1)
    n, m, s = config.batch_size, vcfg.n_continuous, vcfg.n_categories
    loss, recon, kl = np.zeros(config.steps), np.zeros(config.steps), np.zeros((config.steps, m))
    t_step, t_solver, t_unary = [], [], []
    zeros_d = np.zeros((n, s), np.float32)
    batches = ds.batches(n, seed=config.seed + 2)
    if s and config.steps > sched.warmup_stages * sched.interval:  # compile outside the timed steps
        jax.block_until_ready(unary_fn(params, jnp.zeros((n, vcfg.image_size, vcfg.image_size, 1)), jnp.zeros((n, m))))
    bar = tqdm(range(config.steps), desc=f"{config.model} s{config.seed}", disable=not progress, mininterval=2.0)
    for t in bar:
        images, _ = next(batches)
        x = jnp.asarray(images[..., None], jnp.float32)
        eps = jnp.asarray(rng.standard_normal((n, m)), jnp.float32)
        t0 = time.perf_counter()
        if sched.discrete_on(t):
            u = np.asarray(unary_fn(params, x, eps))  # the one host round-trip of the step
            t1 = time.perf_counter()
            labels = discrete_step(u, config.lam)
            t2 = time.perf_counter()
            d = np.eye(s, dtype=np.float32)[labels]
            t_unary.append(t1 - t0)
            t_solver.append(t2 - t1)
        else:
            d = zeros_d
        params, opt_state, lo, re, k = step_fn(params, opt_state, x, eps, jnp.asarray(d), jnp.asarray(sched.betas(t)))
        lo = float(lo)  # blocks
        dt = time.perf_counter() - t0
        if sched.discrete_on(t):
            t_step.append(dt)
        loss[t], recon[t], kl[t] = lo, float(re), np.asarray(k)
        if t % 50 == 0:
            bar.set_postfix(loss=f"{lo:.1f}", recon=f"{float(re):.1f}", open=sched.n_open(t))
    jax.block_until_ready(params)
    n_disc = len(t_solver)
    first_solver = t_solver[0] if n_disc else float("nan")
    if n_disc > 1:  # the first solver call loads the numba cache (about a second): not a step cost
        t_step, t_solver, t_unary = t_step[1:], t_solver[1:], t_unary[1:]
    step_mean = float(np.mean(t_step)) if t_step else float("nan")
    return TrainResult(
        params=params,
        config=config,
        loss=loss,
        recon=recon,
        kl=kl,
        step_seconds=step_mean,
        solver_seconds=float(np.mean(t_solver)) if n_disc else float("nan"),
        unary_seconds=float(np.mean(t_unary)) if n_disc else float("nan"),
        discrete_share=float(np.sum(t_solver) / np.sum(t_step)) if n_disc else float("nan"),
        unary_share=float(np.sum(t_unary) / np.sum(t_step)) if n_disc else float("nan"),
        n_discrete_steps=n_disc,
        seconds=time.perf_counter() - t_start,
        first_solver_seconds=first_solver,
    )


@dataclass(frozen=True, slots=True)
class Encoded:
    """Test-time representation of a batch: ``mu`` (n, m), ``kl`` (n, m) per-dimension KL, ``category`` (n,) int or
    None (no discrete latent)."""

    mu: np.ndarray
    kl: np.ndarray
    category: np.ndarray | None


def make_encoder(params, config: TrainConfig, *, batch_size: int = 1000):
    """A function ``images (n, H, W) uint8 -> Encoded``: eps = 0, category = argmax softmax(-u) (= argmin u), with no
    balance term (spec §2 item 6)."""
    import jax.numpy as jnp

    from combax.models import cascade_vae as cv

    enc, unary = _encode_fns(config.vae_config())

    def encode(images: np.ndarray) -> Encoded:
        mus, kls, cats = [], [], []
        for start in range(0, len(images), batch_size):
            x = jnp.asarray(np.asarray(images[start : start + batch_size])[..., None], jnp.float32)
            mu, sigma = enc(params, x)
            mus.append(np.asarray(mu))
            kls.append(np.asarray(cv.kl_per_dim(mu, sigma)))
            if unary is not None:
                cats.append(np.asarray(unary(params, x, jnp.zeros_like(mu))).argmin(axis=1))
        return Encoded(
            np.concatenate(mus), np.concatenate(kls), np.concatenate(cats).astype(np.int64) if cats else None
        )

    return encode


def infer_categories(params, config: TrainConfig, images: np.ndarray) -> np.ndarray:
    """(n,) test-time category of each image: argmax of softmax(-u) with eps = 0, no balance term."""
    enc = make_encoder(params, config)(images)
    if enc.category is None:
        raise ValueError(f"`config.model` = {config.model!r} has no discrete latent")
    return enc.category


@dataclass(frozen=True, slots=True)
class Evaluation:
    """Scores of a trained model on procedural dSprites (last checkpoint, no selection).

    Attributes
    ----------
    factor_vae : FactorVAE score, original variant (800 votes of 100, active = mean KL > 0.1, discrete latent counted).
    factor_vae_dlib : FactorVAE eval accuracy in the disentanglement_lib protocol (variance pruning), or None.
    shape_accuracy : accuracy of the test-time category as a shape classifier after best matching, or None.
    active : (m,) bool, continuous dimensions with mean KL > 0.1 nats.
    mean_kl : (m,) mean KL per dimension over the global sample.
    seconds : wall time of the evaluation.
    """

    factor_vae: float
    factor_vae_dlib: float | None
    shape_accuracy: float | None
    active: np.ndarray
    mean_kl: np.ndarray
    seconds: float


def evaluate(
    params,
    config: TrainConfig,
    *,
    n_global: int = 10_000,
    n_votes: int = 800,
    dlib_votes: tuple[int, int] | None = (1000, 500),
    n_shape: int = 10_000,
    vote_batch: int | None = None,
    seed: int = 0,
) -> Evaluation:
    """FactorVAE scores (both variants) and shape-classification accuracy of ``params`` on dSprites.

    ``dlib_votes`` = (train, eval) votes of the disentanglement_lib variant (theirs: 10,000 and 5,000), or None to
    skip it. ``vote_batch`` is the images per vote (None: 100 original, 64 dlib). Active dimensions: mean KL over ``n_global`` uniform images > 0.1 nats, as in the original.
    """
    from combax.adapters import disentanglement as dis
    from combax.data.dsprites import dsprites

    t0 = time.perf_counter()
    ds = dsprites(config.image_size)
    encode = make_encoder(params, config)
    rng = np.random.default_rng(seed)
    enc = encode(ds.render(ds.sample_classes(n_global, rng)))
    mean_kl = enc.kl.mean(axis=0)
    active = mean_kl > 0.1
    represent = dis.dsprites_represent(encode, ds)
    fv = dis.factor_vae_score(
        represent,
        dis.DSPRITES_FACTOR_SIZES,
        active=active,
        variant="original",
        n_votes=n_votes,
        batch_size=vote_batch,
        n_global=n_global,
        seed=seed,
    )
    fv_dlib = None
    if dlib_votes is not None:
        fv_dlib = dis.factor_vae_score(
            represent,
            dis.DSPRITES_FACTOR_SIZES,
            variant="dlib",
            n_votes=dlib_votes[0],
            n_eval_votes=dlib_votes[1],
            batch_size=vote_batch,
            n_global=n_global,
            seed=seed + 1,
        ).score
    acc = None
    if config.model == "cascade":
        cls = ds.sample_classes(n_shape, rng)
        acc = dis.classification_accuracy(encode(ds.render(cls)).category, cls[:, 1])
    return Evaluation(fv.score, fv_dlib, acc, active, mean_kl, time.perf_counter() - t0)


def latent_traversals(params, config: TrainConfig, image: np.ndarray, values=(-2.0, -1.0, 0.0, 1.0, 2.0)):
    """Decoded traversals of one image's code: ``(traversals (m, V, H, W), categories (S, H, W) or None)``.

    Row j of ``traversals`` decodes ``[mu(image)`` with ``z_j`` replaced by each of ``values``, ``e_c]`` where c is
    the image's test-time category (no one-hot for a continuous-only model); ``categories`` decodes ``[mu, e_k]`` for
    every category k. Pixel probabilities in [0, 1].
    """
    import jax.numpy as jnp

    from combax.models import cascade_vae as cv

    img = np.asarray(image)
    vcfg = config.vae_config()
    if img.shape != (vcfg.image_size, vcfg.image_size):
        raise ValueError(f"`image` must have shape ({vcfg.image_size}, {vcfg.image_size}); got {img.shape}")
    enc = make_encoder(params, config)(img[None])
    m, s, vals = vcfg.n_continuous, vcfg.n_categories, np.asarray(values, dtype=np.float32)
    z = np.repeat(enc.mu.astype(np.float32), m * len(vals), axis=0).reshape(m, len(vals), m)
    for j in range(m):
        z[j, :, j] = vals
    z = z.reshape(m * len(vals), m)
    d = np.zeros((len(z), s), np.float32)
    if s:
        d[:, enc.category[0]] = 1.0
    decode = cv.make_decode_fn(cv.VAE(vcfg))
    size = vcfg.image_size
    trav = np.asarray(decode(params, jnp.asarray(np.concatenate([z, d], axis=1)))).reshape(m, len(vals), size, size)
    cats = None
    if s:
        zd = np.concatenate([np.repeat(enc.mu.astype(np.float32), s, axis=0), np.eye(s, dtype=np.float32)], axis=1)
        cats = np.asarray(decode(params, jnp.asarray(zd)))
    return trav, cats
