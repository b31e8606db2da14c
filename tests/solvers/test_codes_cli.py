"""``combax codes`` (exact k-hot codes from a .npy score matrix) and its demo step."""

import json

import numpy as np
import pytest

from combax.cli import build_parser, main
from combax.commands import codes as codes_cmd
from combax.solvers import assign


@pytest.fixture
def scores(tmp_path):
    s = np.random.default_rng(0).random((20, 12))
    path = tmp_path / "scores.npy"
    np.save(path, s)
    return s, path


def test_json_output_and_codes_file(scores, tmp_path, capsys):
    s, path = scores
    out = tmp_path / "codes.npy"
    rc = main(["codes", str(path), "--k", "3", "--lam", "0.5", "--out", str(out), "--json"])
    info = json.loads(capsys.readouterr().out)
    z = np.load(out)
    assert rc == 0 and z.dtype == bool and z.shape == s.shape and (z.sum(axis=1) == 3).all()
    best = assign.energy(s, assign.sparse_codes(s, 3, 0.5), 0.5)
    assert info["energy"] == pytest.approx(best, rel=1e-12) and assign.energy(s, z, 0.5) == pytest.approx(best)
    load = z.sum(axis=0)
    assert info["load_min"] == load.min() and info["load_max"] == load.max() and info["seconds"] >= 0
    assert info["backend"] == "numba" and info["out"] == str(out)


@pytest.mark.parametrize("backend", ["ortools", "networkx"])
def test_reference_backends_and_groups(scores, tmp_path, capsys, backend):
    pytest.importorskip("ortools" if backend == "ortools" else "networkx")
    s, path = scores
    groups = np.repeat([0, 1, 2, 3], 5)
    gpath = tmp_path / "groups.npy"
    np.save(gpath, groups)
    argv = ["codes", str(path), "--k", "2", "--lam", "0.3", "--groups", str(gpath), "--lam-group", "2.0"]
    assert main([*argv, "--backend", backend, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    best = assign.energy(s, assign.sparse_codes(s, 2, 0.3, groups, 2.0), 0.3, groups, 2.0)
    assert info["energy"] == pytest.approx(best, rel=1e-9)


def test_text_output(scores, capsys):
    s, path = scores
    assert main(["codes", str(path), "--k", "4", "--lam", "1"]) == 0
    text = capsys.readouterr().out
    e = assign.energy(s, assign.sparse_codes(s, 4, 1.0), 1.0)
    assert f"energy       {e:.10g}" in text and "loads        min" in text and "solve" in text


def test_errors(scores, tmp_path, capsys):
    s, path = scores
    assert main(["codes", str(tmp_path / "missing.npy"), "--k", "2", "--lam", "1"]) == 2
    err = capsys.readouterr().err
    assert "combax codes: error: SCORES file" in err and "does not exist" in err
    bad = tmp_path / "bad.npy"
    bad.write_text("not an array")
    assert main(["codes", str(bad), "--k", "2", "--lam", "1"]) == 2
    assert "is not a readable .npy array" in capsys.readouterr().err
    assert main(["codes", str(path), "--k", "13", "--lam", "1"]) == 2
    assert "`k` must satisfy 1 <= k <= d = 12" in capsys.readouterr().err
    assert main(["codes", str(path), "--k", "2", "--lam", "1", "--groups", str(tmp_path / "g.npy")]) == 2
    assert "`--groups` file" in capsys.readouterr().err
    assert main(["codes", str(path), "--k", "2", "--lam", "-1"]) == 2
    assert "`lam` must be finite and >= 0" in capsys.readouterr().err


def test_listed_in_help():
    assert "codes" in build_parser().format_help()


def test_demo_step_energies_equal(tmp_path):
    rows = codes_cmd.demo(tmp_path)
    assert len(rows) == 4 and all(r.step == "codes" for r in rows)
    for r in rows:
        if "skipped" not in r.result:
            assert "E = E(numba): True" in r.check
