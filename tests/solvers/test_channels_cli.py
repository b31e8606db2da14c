"""``combax channels solve`` / ``combax channels build``, the .npz format, and the demo step."""

import json

import numpy as np
import pytest

from combax.cli import build_parser, main
from combax.commands import channels as channels_cmd
from combax.solvers import channels
from combax.solvers.channels import ChannelProblem


def _tiny():
    rng = np.random.default_rng(7)
    widths = [2, 3, 3, 4, 2]
    convs = [(k, k + 1, rng.integers(0, 10, size=(widths[k + 1], widths[k])).astype(float)) for k in range(4)]
    lin = np.array([[0.5, 1.0, -1.0], [0.0, 0.5, 2.0], [0.25, 0.0, 0.0], [1.0, 1.0, -0.5]])
    return ChannelProblem(widths, convs, [1.0, 2.0, 2.0, 1.0], 30.0, [(1, 2, "identity"), (2, 3, "zero_pad")], lin)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("channels_cli")
    prob = _tiny()
    prob.save(tmp / "tiny.npz")
    return tmp, prob


def test_save_load_round_trip(files, tmp_path):
    tmp, prob = files
    back = channels.load_problem(tmp / "tiny.npz")
    assert back.budget == prob.budget and back.n_binaries == prob.n_binaries
    assert channels.brute_force(back).objective == channels.brute_force(prob).objective
    assert channels.load_problem(tmp / "tiny.npz", budget=12.0).budget == 12.0
    # user conv order, residual kinds, groups and linear terms survive
    rng = np.random.default_rng(0)
    w = [2, 4, 4]
    convs = [(1, 2, rng.random((4, 4))), (0, 1, rng.random((4, 2)))]
    p = ChannelProblem(w, convs, [3.0, 1.0], 40.0, [(1, 2, "projection")], np.ones((2, 3)), [1, 2, 2])
    p.save(tmp_path / "p.npz")
    q = channels.load_problem(tmp_path / "p.npz")
    assert q.full_resource == p.full_resource and q.min_resource == p.min_resource
    a, b = channels.solve(q), channels.solve(p)
    assert a.status == "optimal" and a.objective == b.objective
    # a file without a budget needs one
    with np.load(tmp_path / "p.npz") as z:
        arrays = {k: z[k] for k in z.files if k != "budget"}
    np.savez(tmp_path / "nobudget.npz", **arrays)
    with pytest.raises(ValueError, match="no `budget`"):
        channels.load_problem(tmp_path / "nobudget.npz")


def test_solve_json_matches_library(files, capsys):
    tmp, prob = files
    rc = main(["channels", "solve", str(tmp / "tiny.npz"), "--json"])
    out = json.loads(capsys.readouterr().out)
    bf = channels.brute_force(prob)
    assert rc == 0 and out["status"] == "optimal" and out["method"] == "bnb"
    assert abs(out["objective"] - bf.objective) <= 1e-9 and out["resource"] <= out["budget"] == 30.0
    assert out["gap"] == 0.0 and out["kept_per_map"][0] == 2 and len(out["kept_out_per_conv"]) == 4


@pytest.mark.parametrize("method", ["bnb", "cpsat", "highs", "cbc", "greedy"])
def test_solve_every_method_with_budget_and_time_limit(files, capsys, method):
    tmp, prob = files
    rc = main(["channels", "solve", str(tmp / "tiny.npz"), "--budget", "25", "--method", method,
               "--time-limit", "30", "--json"])  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    bf = channels.brute_force(prob.with_budget(25))
    assert rc == 0 and out["budget"] == 25 and out["method"] == method
    if method == "greedy":
        assert out["objective"] <= bf.objective + 1e-9
    else:
        assert abs(out["objective"] - bf.objective) <= 1e-6 * bf.objective


def test_solve_ratio_text_output_and_selection_file(files, capsys, tmp_path):
    tmp, prob = files
    sel = tmp_path / "sel.npz"
    rc = main(["channels", "solve", str(tmp / "tiny.npz"), "--ratio", "0.6", "--rel-gap", "0.01", "--out", str(sel)])
    text = capsys.readouterr().out
    assert rc == 0 and "status       optimal" in text and "selection written" in text
    p = prob.with_budget(0.6 * prob.full_resource)
    with np.load(sel) as z:
        keep = [z[f"keep_{t}"] for t in range(5)]
        keep_out = [z[f"keep_out_{k}"] for k in range(4)]
        ev = p.evaluate(keep_out, keep)
        assert ev.feasible and abs(ev.objective - float(z["objective"])) <= 1e-9
    assert ev.objective >= 0.99 * channels.brute_force(p).objective


def test_solve_node_limit_with_progress_bar(capsys, tmp_path):
    channels.resnet_cifar(8, 0, ratio=0.5).save(tmp_path / "r8.npz")
    rc = main(["channels", "solve", str(tmp_path / "r8.npz"), "--node-limit", "3", "--progress", "--json"])
    cap = capsys.readouterr()
    out = json.loads(cap.out)
    assert rc == 0 and out["status"] in ("node_limit", "optimal") and out["bound"] >= out["objective"]
    assert "channels bnb" in cap.err


def test_infeasible_budget_exit_code_1(files, capsys):
    tmp, prob = files
    rc = main(["channels", "solve", str(tmp / "tiny.npz"), "--budget", str(prob.min_resource - 1), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 1 and out["status"] == "infeasible" and out["min_resource"] == prob.min_resource
    assert "objective" in out and out["objective"] is None
    rc = main(["channels", "solve", str(tmp / "tiny.npz"), "--budget", str(prob.min_resource - 1)])
    assert rc == 1 and "below the smallest valid network" in capsys.readouterr().out


def test_errors_exit_with_code_2(files, capsys, tmp_path):
    tmp, _ = files
    assert main(["channels", "solve", str(tmp_path / "missing.npz")]) == 2
    assert "combax channels: error" in capsys.readouterr().err
    assert main(["channels", "solve", str(tmp / "tiny.npz"), "--rel-gap", "2"]) == 2
    assert "`rel_gap`" in capsys.readouterr().err
    assert main(["channels", "solve", str(tmp / "tiny.npz"), "--ratio", "-1"]) == 2
    assert "`--ratio`" in capsys.readouterr().err
    assert main(["channels", "solve", str(tmp / "tiny.npz"), "--budget", "inf"]) == 2
    assert "`budget`" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["channels", "solve", str(tmp / "tiny.npz"), "--method", "cplex"])
    with pytest.raises(SystemExit):
        main(["channels", "solve", str(tmp / "tiny.npz"), "--budget", "3", "--ratio", "0.5"])
    capsys.readouterr()


def test_build_resnet20_and_solve_it(tmp_path, capsys):
    out = tmp_path / "r20.npz"
    assert main(["channels", "build", "resnet20", "--ratio", "0.5", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "19 convs, 976 free binaries, 29744 bilinear terms" in text
    prob = channels.load_problem(out)
    ref = channels.resnet_cifar(20, 0, ratio=0.5)
    assert prob.n_bilinear == 29_744 and prob.budget == ref.budget
    assert channels.solve(prob, "greedy").objective == channels.solve(ref, "greedy").objective
    rc = main(["channels", "solve", str(out), "--time-limit", "1", "--json"])
    res = json.loads(capsys.readouterr().out)
    assert rc == 0 and res["resource"] <= res["budget"] and res["bound"] >= res["objective"]
    assert res["status"] in ("optimal", "time_limit")


def test_build_options(tmp_path, capsys):
    p = tmp_path / "v.npz"
    assert main(["channels", "build", "vgg16", "--resource", "params", "--ratio", "0.3", "--group-size", "8",
                 "--out", str(p)]) == 0  # fmt: skip
    prob = channels.load_problem(p)
    assert prob.n_maps == 13 and np.all(prob._c["group"][1:] == 8)
    assert abs(prob.budget - 0.3 * prob.full_resource) <= 1e-6 * prob.budget
    # weights from a file: per-kernel L1 importance
    rng = np.random.default_rng(1)
    shapes = [(16, 3)] + [(16, 16)] * 2 + [(32, 16), (32, 32), (64, 32), (64, 64)]
    ws = {f"w{k:02d}": rng.standard_normal((co, ci, 3, 3)) for k, (co, ci) in enumerate(shapes)}
    np.savez(tmp_path / "w.npz", **ws)
    assert main(["channels", "build", "resnet20", "--weights", str(tmp_path / "w.npz"), "--out", str(p)]) == 2
    assert "conv weights" in capsys.readouterr().err  # ResNet-20 needs 19 weights
    capsys.readouterr()


def test_channels_help_and_subcommands_reachable(capsys):
    assert main(["channels"]) == 2
    text = capsys.readouterr().out
    assert "solve" in text and "build" in text and "importance_<k>" in text
    assert "channels" in build_parser().format_help()
    assert callable(channels_cmd.add_subcommands) and channels_cmd.DEMO_ORDER == 20


@pytest.mark.slow
def test_demo_step(tmp_path):
    rows = channels_cmd.demo(tmp_path)
    assert len(rows) == 6 and all(r.step == "channels" for r in rows)
    checks = " ".join(r.check for r in rows)
    assert "False" not in checks and "agrees: True" in checks
    assert rows[1].result.startswith("optimal")
    assert "gap" in rows[2].result
    assert sum(r.seconds for r in rows) < 90
