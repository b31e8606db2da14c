"""The channel B&B's window search (`_channels_bnb._window_search`), a primal heuristic at the root. Specification:
with every window searched to the end, the selection it returns cannot be improved by changing the channels of any
WINDOW consecutive maps alone (checked by enumerating each window, every candidate scored by ``prob.evaluate``); it
never lowers the incumbent; and the B&B with it stays exact."""

import itertools

import numpy as np
import pytest

from combax.solvers import _channels_bnb as bnb
from combax.solvers import channels
from combax.solvers.channels import ChannelProblem


def chain_instance(rng):
    """A random plain chain of 4-6 convs (map t is the output of conv t - 1 and the input of conv t), budget strictly
    between the smallest and the full network."""
    while True:
        m = int(rng.integers(4, 7))
        widths = [int(rng.integers(1, 4))] + [int(rng.integers(1, 4)) for _ in range(m)]
        convs = [(t - 1, t, rng.lognormal(0, 1, size=(widths[t], widths[t - 1]))) for t in range(1, m + 1)]
        prob = ChannelProblem(widths, convs, rng.uniform(0.5, 5, size=m), 0.0)
        if prob.n_binaries > 16 or prob.full_resource <= prob.min_resource:
            continue
        lo, hi = prob.min_resource, prob.full_resource
        return prob.with_budget(lo + rng.uniform(0.1, 0.9) * (hi - lo))


CASES = [chain_instance(np.random.default_rng(700 + i)) for i in range(40)]


def best_window_change(prob, sol, first, size):
    """The best objective over every selection that differs from ``sol`` only on maps first .. first + size - 1."""
    widths = [len(k) for k in sol.keep]
    maps = range(first, min(first + size, len(widths)))
    best = -np.inf
    for bits in itertools.product((False, True), repeat=sum(widths[t] for t in maps)):
        keep = [np.asarray(k, bool).copy() for k in sol.keep]
        pos = 0
        for t in maps:
            keep[t] = np.array(bits[pos : pos + widths[t]], bool)
            pos += widths[t]
        ev = prob.evaluate(keep[1:], keep)
        if ev.feasible:
            best = max(best, ev.objective)
    return best


def window_only(monkeypatch, size, on=True):
    """The B&B's root with the window search searching every window to the end, and no branching after it."""
    monkeypatch.setattr(bnb, "WINDOW", size if on else 0)
    monkeypatch.setattr(bnb, "WINDOW_NODES", 1 << 30)
    monkeypatch.setattr(bnb, "WINDOW_SWEEPS", 1 << 30)


@pytest.mark.parametrize("size", [1, 2])
def test_no_window_of_consecutive_maps_improves_the_window_search_result(size, monkeypatch):
    window_only(monkeypatch, size)
    for prob in CASES:
        sol = channels.solve(prob, "bnb", node_limit=1)
        assert prob.evaluate(sol.keep_out, sol.keep).feasible
        tol = 1e-9 * max(1.0, abs(sol.objective))
        for first in range(1, len(sol.keep) - size + 1):
            assert best_window_change(prob, sol, first, size) <= sol.objective + tol, (first, size)


def test_the_window_search_lifts_the_root_incumbent_on_some_instances_and_never_lowers_it(monkeypatch):
    lifted = 0
    for prob in CASES:
        found = {}
        for on in (False, True):
            window_only(monkeypatch, 2, on)
            found[on] = channels.solve(prob, "bnb", node_limit=1).objective
        assert found[True] >= found[False] - 1e-12 * max(1.0, abs(found[False]))
        lifted += found[True] > found[False] + 1e-9 * max(1.0, abs(found[False]))
    assert lifted >= 1


@pytest.mark.parametrize("size", [1, 2, 3])
def test_bnb_with_the_window_search_finds_the_brute_force_optimum(size, monkeypatch):
    monkeypatch.setattr(bnb, "WINDOW", size)
    for prob in CASES[:20]:
        sol = channels.solve(prob, "bnb")
        assert sol.status == "optimal"
        assert sol.objective == pytest.approx(channels.brute_force(prob).objective, rel=1e-9, abs=1e-12)
