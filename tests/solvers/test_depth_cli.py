"""``combax depth solve`` / ``combax depth front`` and the demo step, on the released MobileNetV2 tables."""

import json

import numpy as np
import pytest

from combax.cli import build_parser, main
from combax.commands import depth as depth_cmd
from combax.data import depth_table_path
from combax.solvers import depth


@pytest.fixture(scope="module")
def mbv2(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("depth_cli")
    s = depth.mbv2_structure()
    imp = depth.synthetic_importance(s.valid_blocks(), s.optional, seed=0)
    depth.write_importance_csv(tmp / "imp.csv", imp)
    prob = depth.DepthProblem(depth.read_csv_table(depth_table_path("mbv2_1.4")), imp, s.optional)
    depth.save_npz(tmp / "prob.npz", prob)
    return tmp, prob


def test_solve_json_matches_library(mbv2, capsys):
    tmp, prob = mbv2
    table = str(depth_table_path("mbv2_1.4"))
    rc = main(
        [
            "depth",
            "solve",
            table,
            "--importance",
            str(tmp / "imp.csv"),
            "--budget",
            "25",
            "--resolution",
            "0.05",
            "--json",
        ]
    )
    out = json.loads(capsys.readouterr().out)
    ref = depth.solve(prob, 25, resolution=0.05)
    assert rc == 0 and out["status"] == "optimal"
    assert out["objective"] == ref.objective and out["latency"] == ref.latency and out["int_latency"] == ref.int_latency
    assert tuple(out["activations"]) == ref.activations and tuple(out["cuts"]) == ref.cuts
    assert out["latency"] <= 25


def test_solve_from_npz_text_output_and_infeasible_exit_code(mbv2, capsys):
    tmp, prob = mbv2
    assert main(["depth", "solve", str(tmp / "prob.npz"), "--budget", "23"]) == 0
    text = capsys.readouterr().out
    assert "status       optimal" in text and f"{depth.solve(prob, 23).objective:.6g}" in text
    assert main(["depth", "solve", str(tmp / "prob.npz"), "--budget", "5"]) == 1
    assert "minimum reachable latency is 10.2784" in capsys.readouterr().out


def test_optional_positions_auto_none_and_list(mbv2):
    tmp, prob = mbv2
    table = depth_table_path("mbv2_1.4")
    auto = depth_cmd.load_problem(table, tmp / "imp.csv")
    assert auto.optional == prob.optional
    assert depth_cmd.load_problem(table, tmp / "imp.csv", "none").optional == ()
    assert depth_cmd.load_problem(table, tmp / "imp.csv", "2,5").optional == (2, 5)


def test_front_json_and_plot(mbv2, capsys):
    tmp, prob = mbv2
    plot = tmp / "front.png"
    rc = main(["depth", "front", str(tmp / "prob.npz"), "--plot", str(plot), "--json"])
    out = json.loads(capsys.readouterr().out)
    front = depth.pareto_front(prob)
    assert rc == 0 and out["n_points"] == len(front)
    np.testing.assert_array_equal([p["latency"] for p in out["points"]], front.latency)
    assert plot.stat().st_size > 10_000


def test_errors_exit_with_code_2(mbv2, capsys):
    tmp, _ = mbv2
    assert main(["depth", "solve", str(depth_table_path("mbv2_1.4")), "--budget", "25"]) == 2
    assert "`--importance` is required" in capsys.readouterr().err
    assert main(["depth", "solve", str(tmp / "prob.npz"), "--budget", "nan"]) == 2
    assert "`budget` must be a finite number" in capsys.readouterr().err
    assert (
        main(
            [
                "depth",
                "front",
                str(depth_table_path("mbv2_1.4")),
                "--importance",
                str(tmp / "imp.csv"),
                "--optional",
                "x",
            ]
        )
        == 2
    )
    assert "`--optional` must be" in capsys.readouterr().err


def test_depth_help_and_subcommands_reachable(capsys):
    assert main(["depth"]) == 2
    assert "solve" in capsys.readouterr().out
    parser = build_parser()
    assert "depth" in parser.format_help()
    assert callable(depth_cmd.add_subcommands)


def test_demo_step(tmp_path):
    rows = depth_cmd.demo(tmp_path)
    checks = " ".join(r.check for r in rows)
    assert "171/171 times, 171/171 breaks" in checks
    assert "best front point 4/4" in checks and "HiGHS MILP 4/4" in checks
    assert "False" not in checks
    assert (tmp_path / "depth_front.png").stat().st_size > 10_000
    # the tiny end-to-end compression: merged == unmerged is a check; its report and plot are written
    assert any(r.task.startswith("compress end to end: merged") and r.check.endswith(": True") for r in rows)
    assert (tmp_path / "depth_compress" / "report.png").stat().st_size > 10_000
