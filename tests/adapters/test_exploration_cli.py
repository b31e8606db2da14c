"""``combax emi run``: bad arguments fail fast with a message naming the argument; a tiny run prints JSON."""

import json

import pytest

from combax.cli import main


@pytest.mark.parametrize(
    "argv,name",
    [
        (["--size", "1"], "--size"),
        (["--seeds", "0"], "--seeds"),
        (["--episodes", "0"], "--episodes"),
        (["--steps", "-3"], "--steps"),
        (["--episodes", "5", "--steps", "5"], "--episodes"),
        (["--num-envs", "0"], "--num-envs"),
        (["--int-coef", "-1"], "--int-coef"),
        (["--plot", "/no/such/dir/x.png"], "--plot"),
    ],
)
def test_bad_arguments_fail_before_any_work(argv, name):
    with pytest.raises(SystemExit, match=f"`{name}`"):
        main(["emi", "run", *argv])


def test_unknown_agent_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit):
        main(["emi", "run", "--agent", "dqn"])
    assert "--agent" in capsys.readouterr().err


def test_tiny_run_prints_json(capsys):
    rc = main(
        ["emi", "run", "--size", "4", "--agent", "ppo", "--seeds", "1", "--steps", "512", "--num-envs", "8", "--json"]
    )
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["agent"] == "ppo" and out["env"] == "deepsea-4" and out["seeds"] == 1
