"""Depth compression end to end: ``run_compress`` on a tiny MobileNetV2, its input checks, ``combax depth compress``.

Oracles: the unmerged fine-tuned network (merged == unmerged to 1e-4), the latency table (the solver's predicted
latency recomputed from the cut set, within the budget), :meth:`ChainSpec.check_structure` (validity), a brute-force
shortest path (the fastest reachable network), and argparse / ``validate_config`` messages.
"""

import argparse
import dataclasses
import itertools
import json
import re

import numpy as np
import pytest

from combax.adapters import depth_pipeline as DP
from combax.adapters import tables
from combax.adapters.depth_pipeline import CompressConfig, run_compress
from combax.commands._depth_compress import add_compress_parser, cmd_compress
from combax.models.classifier_train import TrainConfig

TINY = CompressConfig(
    model="mobilenetv2",
    width=0.25,
    data="digits",
    settings=((1, 16, 1, 1), (6, 24, 2, 2)),
    budgets=(0.75,),
    train=TrainConfig(epochs=1, batch_size=32, lr=0.05, warmup_steps=5, progress=False),
    finetune=TrainConfig(epochs=1, batch_size=32, lr=0.01, warmup_steps=0, progress=False),
    max_train=256,
    table_warmup=1,
    table_runs=3,
    timing_warmup=1,
    timing_runs=3,
    timing_rounds=2,
    control=False,
    progress=False,
)


def _spec(config=TINY):
    return DP.build_spec(config, 10, 1)


def _no_training(monkeypatch):
    """Make any training or table measurement fail loudly: the checks must come first."""

    def boom(*args, **kwargs):
        raise AssertionError("long work started before the input checks")

    import combax.models.classifier_train as ct

    monkeypatch.setattr(ct, "fit", boom)
    monkeypatch.setattr(tables, "latency_table", boom)
    monkeypatch.setattr(tables, "importance_table", boom)


def _synthetic_latency(spec, merged_factor=0.7):
    """Singles 1 ms; a merged block costs ``merged_factor`` x the sum of its singles."""
    n = spec.L + 1
    T = np.full((n, n), np.nan)
    for i, j in spec.valid_blocks():
        T[i, j] = 1.0 if j == i + 1 else merged_factor * (j - i)
    return T


# ------------------------------------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("compress")
    cfg = dataclasses.replace(TINY, out=str(out))
    return run_compress(cfg), out


def test_pipeline_runs_end_to_end_and_writes_the_report(tiny_report):
    rep, out = tiny_report
    for name in ("report.json", "report.md", "report.png", "base.msgpack", "latency_table.npz"):
        assert (out / name).is_file(), name
    d = json.loads((out / "report.json").read_text())
    assert d == json.loads(json.dumps(rep.to_dict()))
    assert d["network"]["L"] == _spec().L == 8
    assert len(d["runs"]) == 1 and d["runs"][0]["baseline"] is not None
    assert len(d["front"]) >= 1


def test_merged_equals_unmerged_and_every_network_is_exported_and_timed(tiny_report):
    rep, _ = tiny_report
    nets = [rep.base] + [r[k] for r in rep.runs for k in ("dp", "baseline")]
    for net in nets:
        assert net["merged_max_abs_diff"] <= 1e-4, net["label"]
        assert net["merged_max_abs_diff_f64"] <= 1e-5, net["label"]
        assert net["cpu_ms"] > 0 and len(net["cpu_round_medians_ms"]) == TINY.timing_rounds
        assert net["onnx_max_abs_diff"] <= 1e-4, net["label"]
        assert net["merged_accuracy"] == pytest.approx(net["accuracy"], abs=1e-9)
        assert net["latency_ms"] > 0 and len(net["round_medians_ms"]) == TINY.timing_rounds
    for r in rep.runs:
        for k in ("dp", "baseline"):
            assert r[k]["speedup"] == pytest.approx(rep.base["latency_ms"] / r[k]["latency_ms"])
            assert r[k]["speedup_cpu"] == pytest.approx(rep.base["cpu_ms"] / r[k]["cpu_ms"])


def test_solver_choice_respects_the_budget_and_is_a_valid_structure(tiny_report):
    rep, out = tiny_report
    spec = _spec()
    T = tables.LatencyTable.load(out / "latency_table.npz").latency
    for r in rep.runs:
        dp = r["dp"]
        A, S = spec.check_structure(dp["acts"], dp["cuts"])
        assert dp["predicted_latency_ms"] <= r["budget_ms"] + 1e-12
        assert r["budget_ms"] == pytest.approx(r["budget"] * rep.base["stack_latency_ms"])
        recomputed = sum(T[i, j] for i, j in spec.groups(S))
        assert dp["predicted_latency_ms"] == pytest.approx(recomputed, rel=1e-9)
        bl = r["baseline"]
        spec.check_structure(bl["acts"], bl["cuts"])
        if bl["matched"]:
            assert bl["predicted_latency_ms"] <= dp["predicted_latency_ms"] + 1e-9
    assert rep.min_latency <= min(r["budget_ms"] for r in rep.runs)


def test_base_checkpoint_is_reused_when_the_settings_match(tiny_report, monkeypatch):
    rep, out = tiny_report
    spec = _spec()
    from combax.models.chain import ChainNet

    _no_training(monkeypatch)
    cfg = dataclasses.replace(TINY, out=str(out))
    x = DP.load_data(cfg)
    v, loaded = DP._base_network(cfg, ChainNet(spec), spec, x[0], x[1], out, lambda m: None)
    assert loaded
    saved, meta = DP.load_checkpoint(out / "base.msgpack")
    assert meta["network"] == spec.name
    np.testing.assert_array_equal(v["params"]["conv1"]["kernel"], saved["params"]["conv1"]["kernel"])
    other = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=2))
    with pytest.raises(AssertionError, match="long work"):
        DP._base_network(other, ChainNet(spec), spec, x[0], x[1], out, lambda m: None)


# ------------------------------------------------------------------------------------------------ pieces
def test_min_stack_latency_is_the_brute_force_fastest_partition():
    spec = _spec()
    T = _synthetic_latency(spec, 0.6)
    T[2, 5] = 0.3  # a cheap merged block
    L = spec.L
    best = np.inf
    for k in range(L):
        for cuts in itertools.combinations(range(1, L), k):
            groups = spec.groups(cuts)
            if all(np.isfinite(T[g]) for g in groups):
                best = min(best, sum(T[g] for g in groups))
    assert DP.min_stack_latency(T) == pytest.approx(best, rel=1e-12)


def test_depthshrinker_blocks_match_the_target_and_merge_whole_blocks():
    spec = _spec()
    T = _synthetic_latency(spec, 0.5)
    singles = float(sum(T[p - 1, p] for p in range(1, spec.L + 1)))
    for frac in (0.95, 0.8, 0.7):
        blocks, pred = DP.depthshrinker_blocks(spec, T, frac * singles)
        assert pred <= frac * singles + 1e-12
        ends = [0, *spec.optional]
        assert all((i, j) in zip(ends[:-1], ends[1:]) for i, j in blocks)
        A, S = DP.depthshrinker_structure(spec, blocks)
        for i, j in blocks:
            assert j in A and not any(i < p < j for p in (*A, *S))
    with pytest.raises(ValueError, match="not valid blocks"):
        spec.check_structure((1,), (1, 2, 3, 6))


def test_checkpoint_round_trip(tmp_path):
    v = {"params": {"a": {"kernel": np.arange(6, dtype=np.float32).reshape(2, 3)}}, "batch_stats": {}}
    DP.save_checkpoint(tmp_path / "x.msgpack", v, {"k": 1})
    back, meta = DP.load_checkpoint(tmp_path / "x.msgpack")
    np.testing.assert_array_equal(back["params"]["a"]["kernel"], v["params"]["a"]["kernel"])
    assert meta == {"k": 1}


# ------------------------------------------------------------------------------------------------ bad input
def test_budget_below_the_fastest_network_fails_before_training(monkeypatch, tmp_path):
    _no_training(monkeypatch)
    spec = _spec()
    T = _synthetic_latency(spec)
    low = DP.min_stack_latency(T)
    singles = float(np.nansum(np.diag(T, 1)))
    cfg = dataclasses.replace(TINY, budgets=(0.9, 0.5 * low / singles), out=str(tmp_path))
    with pytest.raises(ValueError, match=r"`budgets`: .* is below the fastest reachable network \(5\.6 ms"):
        run_compress(cfg, latency=T)
    ms = dataclasses.replace(cfg, budgets=(1.0,), budget_unit="ms")
    with pytest.raises(ValueError, match=re.escape("`budgets`: 1 ms is below the fastest reachable network")):
        run_compress(ms, latency=T)
    assert not (tmp_path / "base.msgpack").exists()


def test_invalid_structure_fails_before_training(monkeypatch):
    _no_training(monkeypatch)
    T = _synthetic_latency(_spec())
    for acts, cuts, msg in [
        ((3,), (1, 2), "`acts` must be a subset of `cuts`"),
        ((1,), (1, 4), "not valid blocks"),
        ((2,), (2, 9), "`cuts` must hold positions in 1..7"),
    ]:
        cfg = dataclasses.replace(TINY, acts=acts, cuts=cuts, out=None)
        with pytest.raises(ValueError, match=re.escape(msg)):
            run_compress(cfg, latency=T)
    with pytest.raises(ValueError, match="`acts` and `cuts` must be given together"):
        run_compress(dataclasses.replace(TINY, acts=(1,), out=None), latency=T)


def test_tables_of_the_wrong_shape_fail_before_training(monkeypatch):
    _no_training(monkeypatch)
    spec = _spec()
    cfg = dataclasses.replace(TINY, out=None)
    with pytest.raises(ValueError, match=re.escape("`latency` table has shape (5, 5), but mobilenetv2-0.25 has L = 8")):
        run_compress(cfg, latency=np.ones((5, 5)))
    with pytest.raises(ValueError, match=re.escape("`importance` table has shape (9, 9, 2), but")):
        run_compress(cfg, latency=_synthetic_latency(spec), importance=np.zeros((9, 9, 2)))
    holes = _synthetic_latency(spec)
    holes[2, 5] = np.nan
    with pytest.raises(ValueError, match=re.escape("no finite non-negative entry for the valid block (2, 5]")):
        run_compress(cfg, latency=holes)
    other = tables.LatencyTable(_synthetic_latency(spec), _synthetic_latency(spec), "onnxruntime", 8, 8, 1, "vgg8-1")
    with pytest.raises(ValueError, match=re.escape("`latency` table was built for 'vgg8-1'")):
        run_compress(cfg, latency=other)


def test_a_model_that_is_not_a_chain_is_rejected(monkeypatch):
    _no_training(monkeypatch)
    from combax.models.resnet import resnet_cifar

    with pytest.raises(ValueError, match="`model` must be a chain CNN"):
        run_compress(dataclasses.replace(TINY, out=None), model=resnet_cifar(8, base_width=4))
    with pytest.raises(ValueError, match=re.escape("`model` 'resnet20' is not a chain CNN")):
        run_compress(dataclasses.replace(TINY, model="resnet20"))
    with pytest.raises(ValueError, match=re.escape("`budgets` are fractions of the base stack latency")):
        DP.validate_config(dataclasses.replace(TINY, budgets=(1.5,)))


# ------------------------------------------------------------------------------------------------ CLI
def _parse(argv):
    parser = argparse.ArgumentParser(prog="combax depth")
    add_compress_parser(parser.add_subparsers(dest="cmd"))
    return parser.parse_args(["compress", *argv])


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--model", "resnet20"], "`--model` 'resnet20' is not a chain CNN"),
        (["--budgets", "0.8,1.5"], "`--budgets` are fractions"),
        (["--acts", "1,3"], "`--acts` and `--cuts` must be given together"),
        (["--stem-stride", "3"], "`--stem-stride` must be 1 or 2"),
        (["--data", "digits", "--acts", "3", "--cuts", "1,2", "--latency-table", "LT"], "`--acts` must be a subset"),
        (["--data", "digits", "--budgets", "0.01", "--latency-table", "LT"], "`--budgets`: 0.01 x the base stack"),
    ],
)
def test_cli_errors_exit_nonzero_and_name_the_option(argv, named, tmp_path, monkeypatch, capsys):
    _no_training(monkeypatch)
    spec = _spec(dataclasses.replace(TINY, settings=None, width=0.5))
    lt = tables.LatencyTable(_synthetic_latency(spec), _synthetic_latency(spec), "onnxruntime", 8, 8, 1, spec.name)
    path = lt.save(tmp_path / "lt.npz")
    argv = [str(path) if a == "LT" else a for a in argv]
    args = _parse([*argv, "--out", str(tmp_path / "out"), "--no-progress"])
    assert cmd_compress(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("combax depth compress: error: ") and named in err


def test_cli_bad_number_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exc:
        _parse(["--budgets", "fast"])
    assert exc.value.code == 2
    assert "--budgets" in capsys.readouterr().err


def test_a_foreign_file_in_place_of_the_base_checkpoint_is_retrained_and_overwritten(monkeypatch, tmp_path):
    import combax.models.classifier_train as ct
    from combax.models.chain import ChainNet

    spec = _spec()
    trained = {"params": {"fc": {"kernel": np.ones((2, 2), np.float32)}}}
    monkeypatch.setattr(ct, "fit", lambda *a, **k: trained)
    (tmp_path / "base.msgpack").write_bytes(b"an older format")
    x = DP.load_data(TINY)
    v, loaded = DP._base_network(TINY, ChainNet(spec), spec, x[0], x[1], tmp_path, lambda m: None)
    assert not loaded
    saved, meta = DP.load_checkpoint(tmp_path / "base.msgpack")
    np.testing.assert_array_equal(saved["params"]["fc"]["kernel"], trained["params"]["fc"]["kernel"])
    assert meta["network"] == spec.name
