"""A generic image-classifier train loop for Flax linen models with batch norm (SGD + Nesterov, cosine schedule).

``fit(model, x, y, config)`` trains from scratch; ``fit(model, x, y, config, variables=v)`` fine-tunes. The model is
called as ``model.apply(variables, x, train=..., mutable=["batch_stats"])`` and must return logits.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax

__all__ = ["TrainConfig", "fit", "evaluate", "predict", "init_variables"]


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """Hyper-parameters of :func:`fit`.

    Attributes
    ----------
    epochs : passes over the training set.
    batch_size : minibatch size (the last partial batch of an epoch is dropped).
    lr : peak learning rate of the cosine schedule (with ``warmup_steps`` of linear warm-up).
    momentum : Nesterov momentum.
    weight_decay : L2 penalty added to the loss (coupled, as in the CIFAR recipes).
    warmup_steps : linear warm-up steps.
    seed : initialisation and shuffling seed.
    progress : show a tqdm progress bar.
    """

    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_steps: int = 50
    seed: int = 0
    progress: bool = True


def _fit_iv(x, y, config):
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.int32)
    if x.ndim != 4:
        raise ValueError(f"`x` must be (N, H, W, C); got shape {x.shape}")
    if y.shape != (x.shape[0],):
        raise ValueError(f"`y` must have shape ({x.shape[0]},) to match `x`; got {y.shape}")
    if config.epochs < 0 or config.batch_size < 1:
        raise ValueError(f"`config` needs epochs >= 0 and batch_size >= 1; got {config.epochs}, {config.batch_size}")
    if config.batch_size > x.shape[0]:
        raise ValueError(f"`config.batch_size` ({config.batch_size}) exceeds the number of examples ({x.shape[0]})")
    return x, y


def init_variables(model, input_shape, seed: int = 0):
    """Fresh ``{"params", "batch_stats"}`` for ``model`` on inputs of shape (H, W, C).

    Shapes come from ``jax.eval_shape(model.init)`` (nothing is compiled); values are drawn with NumPy: conv kernels
    (rank 4) He-normal :math:`N(0, 2/\\text{fan\\_in})`, dense kernels LeCun-normal :math:`N(0, 1/\\text{fan\\_in})`,
    ``scale`` and ``var`` ones, ``bias`` and ``mean`` zeros. Deterministic in ``seed``.
    """
    shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, *input_shape), jnp.float32)))
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        name = str(getattr(path[-1], "key", path[-1]))
        shape = tuple(leaf.shape)
        if name == "kernel":
            fan_in = int(np.prod(shape[:-1]))
            std = np.sqrt((2.0 if len(shape) == 4 else 1.0) / max(1, fan_in))
            return jnp.asarray(rng.standard_normal(shape) * std, dtype=leaf.dtype)
        if name in ("scale", "var"):
            return jnp.ones(shape, leaf.dtype)
        return jnp.zeros(shape, leaf.dtype)

    return jax.tree_util.tree_map_with_path(fill, shapes)


def fit(model, x, y, config: TrainConfig = TrainConfig(), *, variables=None, desc: str = "train"):
    """Train ``model`` on (``x``, ``y``) with cross-entropy; returns the new variables.

    Parameters
    ----------
    model : flax linen module returning logits, with a ``train`` keyword.
    x : (N, H, W, C) float images; y : (N,) int labels.
    config : :class:`TrainConfig`.
    variables : start from these (fine-tuning); ``None`` initialises with ``config.seed``.
    desc : progress-bar label.

    Notes
    -----
    One jitted step per minibatch; ``epochs * (N // batch_size)`` steps in all. Deterministic for a given seed on a
    given backend.
    """
    from tqdm.auto import tqdm

    x, y = _fit_iv(x, y, config)
    if variables is None:
        variables = init_variables(model, x.shape[1:], config.seed)
    params, stats = variables["params"], variables.get("batch_stats", {})
    steps_per_epoch = x.shape[0] // config.batch_size
    total = max(1, config.epochs * steps_per_epoch)
    schedule = optax.warmup_cosine_decay_schedule(0.0, config.lr, min(config.warmup_steps, total // 2), total)
    tx = optax.sgd(schedule, momentum=config.momentum, nesterov=True)
    opt_state = tx.init(params)
    wd = config.weight_decay

    @jax.jit
    def step(params, stats, opt_state, xb, yb):
        def loss_fn(p):
            logits, new = model.apply({"params": p, "batch_stats": stats}, xb, train=True, mutable=["batch_stats"])
            ce = optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()
            l2 = sum(jnp.sum(w**2) for w in jax.tree_util.tree_leaves(p))
            return ce + 0.5 * wd * l2, (ce, new["batch_stats"])

        (_, (ce, new_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), new_stats, opt_state, ce

    rng = np.random.default_rng(config.seed)
    bar = tqdm(total=total, desc=desc, disable=not config.progress, leave=False)
    for _ in range(config.epochs):
        order = rng.permutation(x.shape[0])
        for i in range(steps_per_epoch):
            idx = order[i * config.batch_size : (i + 1) * config.batch_size]
            params, stats, opt_state, ce = step(params, stats, opt_state, x[idx], y[idx])
            bar.update(1)
            if i % 10 == 0:
                bar.set_postfix(loss=f"{float(ce):.3f}")
    bar.close()
    return {"params": params, "batch_stats": stats}


def predict(model, variables, x, *, batch_size: int = 500, **kwargs) -> np.ndarray:
    """Logits of ``model`` (eval mode) on ``x``, in minibatches; extra keywords go to ``model.apply``."""
    x = np.asarray(x, dtype=np.float32)
    fn = jax.jit(lambda v, xb: model.apply(v, xb, train=False, **kwargs))
    out = [np.asarray(fn(variables, x[i : i + batch_size])) for i in range(0, x.shape[0], batch_size)]
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def evaluate(model, variables, x, y, **kwargs) -> float:
    """Top-1 accuracy (fraction in [0, 1]) of ``model`` on (``x``, ``y``)."""
    logits = predict(model, variables, x, **kwargs)
    return float(np.mean(np.argmax(logits, axis=1) == np.asarray(y)))
