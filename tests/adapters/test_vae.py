"""The CascadeVAE alternating step: one exact solver call per minibatch after the warm-up, test-time inference."""

import itertools
import re

import numpy as np
import pytest

from combax.adapters import vae
from combax.solvers import assign

TINY = dict(image_size=16, batch_size=8, conv_features=(4, 4, 8, 8), hidden=16, n_continuous=3)


def _objective(u, labels, lam):
    counts = np.bincount(labels, minlength=u.shape[1]).astype(float)
    return float(u[np.arange(len(labels)), labels].sum() + lam * (counts * (counts - 1) / 2).sum())


@pytest.fixture(scope="module")
def trained_with_calls():
    """A tiny CascadeVAE run (interval 1: 4 warm-up steps, then the discrete step) with the solver call recorded."""
    calls = []
    real = assign.balanced_labels
    mp = pytest.MonkeyPatch()

    def recording(cost, lam, backend="numba"):
        labels = real(cost, lam, backend=backend)
        calls.append((np.array(cost), float(lam), labels.copy()))
        return labels

    mp.setattr(assign, "balanced_labels", recording)
    try:
        cfg = vae.TrainConfig(model="cascade", steps=7, interval=1, lam=2.0, seed=3, **TINY)
        res = vae.train(cfg, progress=False)
    finally:
        mp.undo()
    return cfg, res, calls


def test_solver_called_once_per_minibatch_after_warmup(trained_with_calls):
    cfg, res, calls = trained_with_calls
    sched = cfg.schedule()
    n_after = sum(sched.discrete_on(t) for t in range(cfg.steps))
    assert n_after == 3 and res.n_discrete_steps == 3
    assert len(calls) == n_after, "exactly one solver call per minibatch after the warm-up, none before"
    for cost, lam, _ in calls:
        assert cost.shape == (cfg.batch_size, 3) and lam == cfg.lam


def test_beta_low_sets_the_beta_of_the_open_dimensions():
    sched = vae.TrainConfig(model="cascade", steps=150, beta_low=2.0).schedule()
    betas = np.asarray(sched.betas(0))
    assert betas[0] == 2.0 and np.all(betas[1:] == sched.beta_high)


def test_labels_are_the_exact_optimum_of_the_recorded_costs(trained_with_calls):
    cfg, _, calls = trained_with_calls
    for cost, lam, labels in calls:
        np.testing.assert_array_equal(labels, assign.balanced_labels(cost, lam))
        np.testing.assert_array_equal(vae.discrete_step(cost, lam), labels)
        ref = assign.balanced_labels(cost, lam, backend="scipy")  # Hungarian on the slot-expanded matrix
        np.testing.assert_allclose(_objective(cost, labels, lam), _objective(cost, ref, lam), rtol=1e-9)


def test_train_result_is_finite_and_timed(trained_with_calls):
    cfg, res, _ = trained_with_calls
    assert res.loss.shape == (7,) and res.kl.shape == (7, 3) and np.isfinite(res.loss).all()
    assert 0 < res.discrete_share < 1 and 0 < res.unary_share < 1 and res.solver_seconds > 0
    assert res.step_seconds >= res.solver_seconds + res.unary_seconds
    assert res.loss[-1] < res.loss[0]


def test_training_is_deterministic(trained_with_calls):
    cfg, res, _ = trained_with_calls
    again = vae.train(cfg, progress=False)
    np.testing.assert_allclose(again.loss, res.loss, rtol=1e-5)


@pytest.mark.parametrize("lam", [0.0, 0.5, 3.0])
def test_discrete_step_equals_brute_force(lam):
    rng = np.random.default_rng(int(lam * 10))
    u = rng.normal(size=(6, 3)) * 2
    labels = vae.discrete_step(u, lam)
    best = min(_objective(u, np.array(ls), lam) for ls in itertools.product(range(3), repeat=6))
    np.testing.assert_allclose(_objective(u, labels, lam), best, rtol=1e-12)
    if lam == 0.0:
        np.testing.assert_array_equal(labels, u.argmin(axis=1))


def test_test_time_inference_is_the_argmin_of_the_eps0_costs(trained_with_calls):
    import jax.numpy as jnp

    from combax.data.dsprites import dsprites

    cfg, res, _ = trained_with_calls
    ds = dsprites(16)
    images = ds.render(ds.sample_classes(16, np.random.default_rng(0)))
    enc = vae.make_encoder(res.params, cfg, batch_size=8)(images)  # two chunks of 8
    encode, unary = vae._encode_fns(cfg.vae_config())  # the jitted model functions (same shapes: no recompile)
    for half in (slice(0, 8), slice(8, 16)):
        x = jnp.asarray(images[half, ..., None], jnp.float32)
        mu, _ = encode(res.params, x)
        u = np.asarray(unary(res.params, x, jnp.zeros_like(mu)))  # eps = 0: z = mu, no balance term
        np.testing.assert_array_equal(enc.category[half], u.argmin(axis=1))
        softmax = np.exp(-(u - u.min(axis=1, keepdims=True)))
        np.testing.assert_array_equal(enc.category[half], np.argmax(softmax / softmax.sum(1, keepdims=True), axis=1))
        np.testing.assert_allclose(enc.mu[half], np.asarray(mu), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(vae.infer_categories(res.params, cfg, images[:8]), enc.category[:8])


def test_models_without_discrete_latent_never_call_the_solver(monkeypatch):
    def fail(*a, **k):
        raise AssertionError("solver called")

    monkeypatch.setattr(assign, "balanced_labels", fail)
    for model in ("betavae", "cascade-c"):
        cfg = vae.TrainConfig(model=model, steps=2, interval=1, **TINY)
        res = vae.train(cfg, progress=False)
        assert res.n_discrete_steps == 0 and np.isnan(res.discrete_share)
        with pytest.raises(ValueError, match=re.escape(f"`config.model` = '{model}' has no discrete latent")):
            vae.infer_categories(res.params, cfg, np.zeros((2, 16, 16), np.uint8))


def test_evaluate_small(trained_with_calls):
    cfg, res, _ = trained_with_calls
    ev = vae.evaluate(res.params, cfg, n_global=16, n_votes=10, dlib_votes=(10, 10), n_shape=16, vote_batch=8, seed=1)
    assert 0 <= ev.factor_vae <= 1 and 0 <= ev.factor_vae_dlib <= 1 and 0 <= ev.shape_accuracy <= 1
    assert ev.active.shape == (3,) and ev.mean_kl.shape == (3,)


@pytest.mark.parametrize(
    ("kwargs", "msg"),
    [
        ({"model": "vae"}, "`model` must be 'cascade', 'cascade-c' or 'betavae'; got 'vae'"),
        ({"steps": 0}, "`steps` must be at least 1; got 0"),
        ({"batch_size": 1}, "`batch_size` must be at least 2; got 1"),
        ({"lam": -1.0}, "`lam` must be non-negative; got -1.0"),
        ({"learning_rate": 0.0}, "`learning_rate` must be positive; got 0.0"),
        ({"beta_low": -0.5}, "`beta_low` must be non-negative; got -0.5"),
        ({"interval": 0}, "`interval` must be at least 1 or None (scaled to `steps`); got 0"),
        ({"n_continuous": 0}, "`n_continuous` must be at least 1 or None (the model's default); got 0"),
        ({"image_size": 40}, "`image_size` must be a positive multiple of 16; got 40"),
    ],
)
def test_train_config_errors(kwargs, msg):
    with pytest.raises(ValueError, match=re.escape(msg)):
        vae.TrainConfig(**kwargs)


def test_dataset_size_mismatch():
    from combax.data.dsprites import dsprites

    cfg = vae.TrainConfig(steps=1, **TINY)
    with pytest.raises(ValueError, match=re.escape("`dataset` renders 32x32 images; `config.image_size` is 16")):
        vae.train(cfg, progress=False, dataset=dsprites(32))


# ------------------------------------------------------------------------------------------------ CLI


def test_checkpoint_round_trip(trained_with_calls, tmp_path):
    import jax

    from combax.commands.vae import load_checkpoint, save_checkpoint

    cfg, res, _ = trained_with_calls
    save_checkpoint(tmp_path / "ck", res.params, cfg)
    for path in (tmp_path / "ck", tmp_path / "ck" / "params.msgpack"):
        params, cfg2 = load_checkpoint(path)
        assert cfg2 == cfg
        for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(res.params)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_checkpoint_errors(trained_with_calls, tmp_path):
    from dataclasses import replace

    from combax.commands.vae import load_checkpoint, save_checkpoint

    with pytest.raises(ValueError, match=re.escape(f"`checkpoint`: {tmp_path / 'config.json'} not found")):
        load_checkpoint(tmp_path)
    cfg, res, _ = trained_with_calls
    save_checkpoint(tmp_path, res.params, replace(cfg, hidden=32))  # the config says another width
    with pytest.raises(ValueError, match=re.escape(f"`checkpoint`: {tmp_path / 'params.msgpack'} does not match")):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize(
    ("argv", "msg"),
    [
        (["vae", "train", "--steps", "0"], "combax vae train: `steps` must be at least 1; got 0"),
        (["vae", "train", "--steps", "5", "--lam", "-1"], "combax vae train: `lam` must be non-negative; got -1.0"),
        (["vae", "eval", "no/such/folder"], "combax vae eval: `checkpoint`: no/such/folder/config.json not found"),
        (["vae", "eval", "x", "--votes", "1"], "combax vae eval: --votes must be at least 2"),
    ],
)
def test_cli_errors_before_any_work(argv, msg):
    from combax.cli import main

    with pytest.raises(SystemExit, match=re.escape(msg)):
        main(argv)


def test_cli_eval_runs(trained_with_calls, tmp_path, capsys):
    import json

    from combax.cli import main
    from combax.commands.vae import save_checkpoint

    cfg, res, _ = trained_with_calls
    save_checkpoint(tmp_path, res.params, cfg)
    argv = ["vae", "eval", str(tmp_path), "--votes", "10", "--vote-batch", "8", "--dlib-votes", "10", "10"]
    assert main([*argv, "--n-global", "16", "--n-shape", "16", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["model"] == "cascade" and 0 <= row["shape_accuracy"] <= 1 and 0 <= row["factor_vae"] <= 1
