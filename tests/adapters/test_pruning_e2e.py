"""Channel pruning end to end: the latency model fit, ``run_prune`` on a tiny ResNet, ``combax channels prune`` errors.

Oracles: a known quadratic (the fit must recover it), ``ChannelProblem.evaluate`` and the pruned kernel shapes (the
resource of the pruned network), argparse / ``validate_config`` messages.
"""

import argparse
import dataclasses
import json
import re

import numpy as np
import pytest

from combax.adapters import latency_model as L
from combax.adapters import pruning as P
from combax.adapters.pruning_pipeline import (
    PruneConfig,
    _base_network,
    build_model,
    load_checkpoint,
    load_data,
    run_prune,
    validate_config,
)
from combax.commands._channels_prune import add_prune_parser, cmd_prune
from combax.models.classifier_train import init_variables
from combax.models.resnet import conv_layout, resnet_cifar
from combax.solvers import channels

SHAPE = (8, 8, 1)


# ---------------------------------------------------------------------------------------------------------- fit
def _grid_points():
    a, b = np.meshgrid([8, 16, 24, 32], [8, 16, 24, 32], indexing="ij")
    return a.ravel().astype(float), b.ravel().astype(float)


def test_fit_recovers_a_known_quadratic_exactly():
    n_in, n_out = _grid_points()
    coef = np.array([-0.05, 0.01, 0.004, 0.0007])  # negative intercept, as the spec's T4 allows
    t = coef[0] + coef[1] * n_in + coef[2] * n_out + coef[3] * n_in * n_out
    fit = L.fit_quadratic(n_in, n_out, t)
    np.testing.assert_allclose(fit.coef, coef, rtol=1e-8, atol=1e-11)
    assert fit.mpe < 1e-6 and fit.r2 > 1 - 1e-12 and fit.n_points == 16
    np.testing.assert_allclose(fit.predict(n_in, n_out), t, rtol=1e-9)


def test_fit_with_noise_is_close_and_m5_drops_the_out_term():
    rng = np.random.default_rng(0)
    n_in, n_out = _grid_points()
    coef = np.array([0.1, 0.01, 0.0, 0.001])
    t = coef[0] + coef[1] * n_in + coef[3] * n_in * n_out
    noisy = t * (1 + 0.01 * rng.standard_normal(t.size))
    fit = L.fit_quadratic(n_in, n_out, noisy)
    assert fit.mpe < 2.0 and fit.r2 > 0.99
    np.testing.assert_allclose(fit.predict(n_in, n_out), t, rtol=0.03)
    m5 = L.fit_quadratic(n_in, n_out, t, model="M5")
    assert m5.coef[2] == 0.0
    np.testing.assert_allclose(m5.coef, coef, rtol=1e-7, atol=1e-10)


def test_fit_keeps_slopes_non_negative_and_handles_a_fixed_input():
    n_in, n_out = _grid_points()
    t = 1.0 - 0.01 * n_in + 0.002 * n_in * n_out  # a negative slope: clipped to 0 (the solver needs c >= 0)
    fit = L.fit_quadratic(n_in, n_out, t)
    assert np.all(fit.coef[1:] >= 0)
    out = np.array([4.0, 8.0, 12.0, 16.0])
    stem = L.fit_quadratic(np.full(4, 3.0), out, 0.02 + 0.006 * out)  # the stem: 3 fixed inputs
    np.testing.assert_allclose(stem.predict(3.0, out), 0.02 + 0.006 * out, rtol=1e-9)
    np.testing.assert_allclose(stem.coef, [0.02, 0, 0, 0.002], rtol=1e-8, atol=1e-12)


def test_fit_slopes_are_never_negative_even_by_round_off():
    # BVLS ends a hair outside its bound on some fits (-1e-23 on about 1 in 200 of these noisy draws where a true
    # slope is zero); the solver's coefficients must be >= 0 exactly
    rng = np.random.default_rng(0)
    for _ in range(300):
        n_in = rng.integers(1, 65, 12).astype(float)
        n_out = rng.integers(1, 65, 12).astype(float)
        io, lin = rng.choice([0, 1], 2)
        t = 0.05 + 1e-4 * io * n_in * n_out + 2e-3 * lin * n_in + rng.normal(0, 1e-3, 12)
        assert np.all(L.fit_quadratic(n_in, n_out, t).coef[1:] >= 0)


@pytest.mark.parametrize(
    ("args", "msg"),
    [
        (([1, 2], [1], [1, 2]), "`n_in`, `n_out` and `t` must have one entry per point"),
        (([1, 2], [1, 2], [1, np.nan]), "`t` must be finite"),
        (([0, 2], [1, 2], [1, 2]), "`n_in` and `n_out` must be >= 1 channel"),
        (([], [], []), "`t` needs at least 1 timed point"),
    ],
)
def test_fit_errors(args, msg):
    with pytest.raises(ValueError, match=re.escape(msg)):
        L.fit_quadratic(*args)


def _synthetic_model(model):
    lay = conv_layout(model, SHAPE)
    rng = np.random.default_rng(0)
    coef = np.c_[
        rng.uniform(-0.01, 0.05, len(lay)), rng.uniform(0, 0.01, (len(lay), 2)), rng.uniform(1e-4, 1e-3, len(lay))
    ]
    zeros = np.zeros(len(lay))
    return L.LatencyModel(tuple(c.name for c in lay), coef, 0.3, zeros, zeros + 1, 8, 1, "onnxruntime", "median_ms", 0)


def test_latency_model_plugs_into_the_channel_problem():
    model = resnet_cifar(8, base_width=4)
    v = init_variables(model, SHAPE, seed=0)
    lm = _synthetic_model(model)
    prob = P.channel_problem(model, v, "latency", 0.7, input_shape=SHAPE, latency_model=lm)
    np.testing.assert_allclose(prob.full_resource + lm.fixed, lm.predict(model, SHAPE), rtol=1e-12)
    np.testing.assert_allclose(prob.budget, 0.7 * lm.predict(model, SHAPE) - lm.fixed, rtol=1e-12)
    sol = channels.solve(prob, "bnb", time_limit=10)
    assert sol.success and sol.resource <= prob.budget
    pruned = P.prune(model, v, sol, input_shape=SHAPE)
    shapes = P.resource_from_shapes(pruned.model, pruned.variables, "latency", input_shape=SHAPE, latency_model=lm)
    np.testing.assert_allclose(shapes, sol.resource, rtol=1e-12)
    np.testing.assert_allclose(lm.predict(pruned.model, SHAPE), sol.resource + lm.fixed, rtol=1e-12)
    with pytest.raises(ValueError, match="do not match the latency model"):
        lm.coefficients(conv_layout(resnet_cifar(14, base_width=4), SHAPE))


def test_fit_and_validate_on_a_tiny_network_run():
    model = resnet_cifar(8, base_width=8)
    lm = L.fit_latency_model(model, SHAPE, batch_size=2, warmup=1, runs=3, calibration=2, progress=False)
    assert lm.names == tuple(c.name for c in conv_layout(model, SHAPE))
    assert np.all(lm.coef[:, 1:] >= 0) and np.isfinite(lm.fixed) and lm.statistic == "median_ms"
    val = L.validate_latency_model(lm, model, None, SHAPE, n_networks=2, warmup=1, runs=3, progress=False)
    assert val.predicted_ms.shape == (2,) and np.all(val.measured_ms > 0) and np.isfinite(val.mape)
    sel = L.random_selection(model, np.random.default_rng(0), SHAPE)
    prob = P.channel_problem(model, init_variables(model, SHAPE), "flops", 1.0, input_shape=SHAPE)
    assert prob.evaluate(sel.keep_out, sel.keep).feasible
    assert all(u.sum() % 8 == 0 for u in sel.keep_out[1:])  # whole tiles of 8 channels


# ---------------------------------------------------------------------------------------------------------- pipeline
def test_pipeline_end_to_end_meets_the_budget_from_shapes(tmp_path):
    ck = tmp_path / "base.msgpack"
    cfg = PruneConfig(model="resnet8", data="digits", width=4, epochs=1, finetune_epochs=1, batch_size=128,
                      time_limit=1.0, baseline=True, checkpoint=str(ck), latency_runs=3, progress=False)  # fmt: skip
    rep = run_prune(cfg, out_dir=tmp_path / "out")
    assert rep.meets_budget
    assert rep.resource_from_shapes == rep.solver["resource"] <= rep.budget
    assert rep.solver["status"] in ("optimal", "time_limit") and rep.solver["gap"] >= 0
    assert 0 <= rep.pruned_accuracy <= 1 and 0 <= rep.base_accuracy <= 1
    assert rep.base_latency_ms > 0 and rep.speedup > 0
    g = rep.greedy
    assert g["resource_from_shapes"] == g["resource"] <= rep.budget
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["meets_budget"] and saved["kept_per_map"] == list(rep.kept_per_map)
    pruned_vars, meta = load_checkpoint(tmp_path / "out" / "pruned.msgpack")
    assert meta["kept_per_map"] == list(rep.kept_per_map)
    assert pruned_vars["params"]["stem_conv"]["kernel"].shape[-1] == rep.kept_per_map[1]
    # the checkpoint is reused (no training), and a checkpoint of another model is refused
    model = build_model("resnet8", 4)
    x_tr, y_tr, _, _ = load_data("digits", 0)
    variables, loaded = _base_network(cfg, model, x_tr, y_tr, SHAPE)
    assert loaded
    np.testing.assert_array_equal(variables["params"]["fc"]["kernel"], load_checkpoint(ck)[0]["params"]["fc"]["kernel"])
    with pytest.raises(ValueError, match="holds width=4, not 8"):
        _base_network(dataclasses.replace(cfg, width=8), model, x_tr, y_tr, SHAPE)


# ---------------------------------------------------------------------------------------------------------- CLI
def _parser():
    parser = argparse.ArgumentParser(prog="combax channels")
    add_prune_parser(parser.add_subparsers(dest="channels_command"))
    return parser


@pytest.mark.parametrize(
    ("argv", "msg"),
    [
        (["--model", "resnet19"], "argument --model: invalid choice: 'resnet19'"),
        (["--data", "cifar10"], "argument --data: invalid choice: 'cifar10'"),
        (["--ratio", "1.5"], "argument --ratio: must lie in (0, 1]"),
        (["--ratio", "0"], "argument --ratio: must lie in (0, 1]"),
        (["--ratio", "half"], "argument --ratio: must be a number in (0, 1]; got 'half'"),
        (["--epochs", "-1"], "argument --epochs: must be >= 0"),
        (["--time-limit", "0"], "argument --time-limit: must be > 0"),
        (["--normalisation", "max"], "argument --normalisation: invalid choice: 'max'"),
    ],
)
def test_cli_rejects_bad_arguments_before_any_work(argv, msg, capsys):
    with pytest.raises(SystemExit) as exc:
        _parser().parse_args(["prune", *argv])
    assert exc.value.code == 2
    assert msg in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "msg"),
    [
        (["--resource", "latency", "--baseline"], "`baseline` (greedy L1) supports resource 'flops' or 'params'"),
        (["--resource", "latency", "--width", "12"], "`tile` must divide the base width 12"),
        (["--rel-gap", "1.0"], "`rel_gap` must lie in [0, 1)"),
    ],
)
def test_cli_option_combinations_fail_fast(argv, msg, capsys, tmp_path):
    args = _parser().parse_args(["prune", *argv, "--out", str(tmp_path)])
    assert args.func is cmd_prune
    assert cmd_prune(args) == 2
    assert msg in capsys.readouterr().err
    assert not (tmp_path / "report.json").exists()


def test_validate_config_names_the_option():
    with pytest.raises(ValueError, match=re.escape("`model` must be one of")):
        validate_config(PruneConfig(model="vgg16"))
    with pytest.raises(ValueError, match=re.escape("`ratio` must lie in (0, 1]")):
        validate_config(PruneConfig(ratio=0.0))
    with pytest.raises(ValueError, match=re.escape("`normalisation` must be one of ('frobenius', 'sum'); got 'l2'")):
        validate_config(PruneConfig(normalisation="l2"))


def test_cli_passes_the_normalisation_to_the_config():
    from combax.commands._channels_prune import config_from_args

    assert config_from_args(_parser().parse_args(["prune"])).normalisation == "frobenius"
    assert config_from_args(_parser().parse_args(["prune", "--normalisation", "sum"])).normalisation == "sum"
