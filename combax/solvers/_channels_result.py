"""The result of a channel-selection solve, and its assembly from canonical masks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._status import Status


@dataclass(frozen=True, slots=True)
class ChannelResult:
    """A channel selection and how it was found.

    Attributes
    ----------
    keep : tuple of M + 1 bool arrays, per map: channels kept after any residual add (v); ``keep[0]`` is all True.
        None when no solution is known (status "infeasible", or a reference stopped before finding one).
    keep_out : tuple of M bool arrays, per conv in the order of ``convs``: kept output channels (u); None as ``keep``.
    objective : float, total importance of the kept weights, recomputed from the masks (nan when ``keep`` is None).
    resource : float, resource of the pruned network, recomputed from the masks (nan when ``keep`` is None).
    bound : float, a proven upper bound on the optimum (nan when the method proves none, e.g. "greedy").
    gap : float, (bound - objective) / max(|bound|, 1e-12); 0 when optimal, nan without a bound or solution.
    status : Status, "optimal", "infeasible", "time_limit" or "node_limit".
    seconds : float, wall time of the solve.
    n_nodes : int, branch-and-bound nodes explored (0 for methods that do not branch or do not say); for "bnb" the main
        search tree's (the nodes of its window search at the root are counted in ``message``).
    method : str, the method used.
    message : str, a human-readable summary (for "infeasible": the minimum resource).
    budget : float, the budget B.
    min_resource : float, resource of the smallest valid network (``min_keep`` channels per map, rounded up to
        whole groups; one channel or group per map by default).
    """

    keep: tuple | None
    keep_out: tuple | None
    objective: float
    resource: float
    bound: float
    gap: float
    status: Status
    seconds: float
    n_nodes: int
    method: str
    message: str
    budget: float
    min_resource: float

    @property
    def success(self) -> bool:
        """True when a solution is returned."""
        return self.keep is not None

    def counts(self) -> np.ndarray:
        """Kept channels per map, (M + 1,) int."""
        if self.keep is None:
            raise ValueError("no solution: `status` is " + str(self.status))
        return np.array([int(k.sum()) for k in self.keep])


def _gap(bound: float, objective: float) -> float:
    if not (np.isfinite(bound) and np.isfinite(objective)):
        return float("nan")
    return max(0.0, (bound - objective) / max(abs(bound), 1e-12))


def make_result(prob, u, v, status, bound, seconds, n_nodes, method, message="") -> ChannelResult:
    """Build the result from canonical grouped masks ``u[t]``, ``v[t]`` (t = 0..M; ``u[0]`` unused) or None."""
    if u is None:
        return ChannelResult(
            None, None, float("nan"), float("nan"), float(bound), float("nan"), Status(status), seconds, int(n_nodes),
            method, message, prob.budget, prob.min_resource,
        )  # fmt: skip
    u, v = prob._expand(u, v)
    c = prob._c
    m = prob.n_maps
    keep_out = [None] * m
    for k in range(m):
        keep_out[c["order"][k]] = np.asarray(u[k + 1], dtype=bool).copy()
    keep = tuple(np.asarray(x, dtype=bool).copy() for x in v)
    ev = prob.evaluate(keep_out, keep)
    if ev.violations:  # a solver bug: never hand back an invalid selection silently
        raise RuntimeError(f"method {method!r} returned an invalid selection: {ev.violations}")
    if status == Status.OPTIMAL and not np.isfinite(bound):
        bound = ev.objective
    if status == Status.OPTIMAL:
        bound = max(float(bound), ev.objective)
    return ChannelResult(
        keep, tuple(keep_out), ev.objective, ev.resource, float(bound), _gap(bound, ev.objective), Status(status),
        seconds, int(n_nodes), method, message, prob.budget, prob.min_resource,
    )  # fmt: skip
