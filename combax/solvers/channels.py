r"""Channel selection as a discrete QCQP, solved exactly by branch-and-bound (Jeong et al., AISTATS 2022).

.. math::

    \max_{u, v \in \{0,1\}} \sum_l u^{(l)\top} I^{(l)} v^{(s_l)} \quad\text{s.t.}\quad
    \sum_l c_l\, n_l\, m_{s_l} + c^{in}_l m_{s_l} + c^{out}_l n_l + c^0_l \le B,

at least ``min_keep[t]`` (by default one) kept output channels per map and the residual constraints that rule out
inactive weights (see :class:`ChannelProblem`).

Public names:

- :class:`ChannelProblem`, :func:`load_problem` (``.npz``), :class:`ChannelResult`, :class:`ChannelEvaluation`;
- :func:`solve` (methods ``"bnb"``, ``"cpsat"``, ``"highs"``, ``"cbc"``, ``"greedy"``), :func:`brute_force`;
- :func:`resnet_cifar`, :func:`vgg_chain`, :func:`importance_from_weight`;
- :func:`select_taps` and :func:`solve_4d`: kernel-shape (4D) selection, two-stage.

Reference: Y. Jeong, D. Lee, G. An, C. Son, H. O. Song, "Optimal channel selection with discrete QCQP",
AISTATS 2022, arXiv:2202.12417.
"""

from __future__ import annotations

import time

import numpy as np

from ._channels_builders import importance_from_weight, resnet_cifar, vgg_chain
from ._channels_problem import ChannelEvaluation, ChannelProblem, load_problem
from ._channels_result import ChannelResult, make_result
from ._channels_taps import TapResult, select_taps, solve_4d
from ._status import Status

__all__ = [
    "ChannelEvaluation",
    "ChannelProblem",
    "ChannelResult",
    "TapResult",
    "METHODS",
    "brute_force",
    "importance_from_weight",
    "load_problem",
    "resnet_cifar",
    "select_taps",
    "solve",
    "solve_4d",
    "vgg_chain",
]

METHODS = ("bnb", "cpsat", "highs", "cbc", "greedy")


def _solve_iv(prob, method, time_limit, rel_gap, node_limit):
    if not isinstance(prob, ChannelProblem):
        raise TypeError(f"`prob` must be a ChannelProblem; got {type(prob).__name__}")
    if method not in METHODS:
        raise ValueError(f"`method` must be one of {METHODS}; got {method!r}")
    if time_limit is not None and not (np.isfinite(time_limit) and time_limit > 0):
        raise ValueError(f"`time_limit` must be a positive number of seconds or None; got {time_limit}")
    if not (0 <= rel_gap < 1):
        raise ValueError(f"`rel_gap` must be in [0, 1); got {rel_gap}")
    if node_limit is not None and int(node_limit) < 1:
        raise ValueError(f"`node_limit` must be a positive integer or None; got {node_limit}")


def _trivial(prob, method, t0):
    """The result when the budget is below the smallest network or covers the whole one; else None."""
    if prob.budget < prob.min_resource:
        msg = f"budget {prob.budget:g} is below the smallest valid network's resource {prob.min_resource:g}"
        return make_result(prob, None, None, Status.INFEASIBLE, np.nan, time.perf_counter() - t0, 0, method, msg)
    if prob.budget >= prob.full_resource:
        g = prob._grouped()
        w = g._c["widths"]
        u = [None] + [np.ones(x, bool) for x in w[1:]]
        v = [np.ones(x, bool) for x in w]
        msg = f"budget {prob.budget:g} covers the full network ({prob.full_resource:g}): everything is kept"
        return make_result(prob, u, v, Status.OPTIMAL, np.nan, time.perf_counter() - t0, 0, method, msg)
    return None


def solve(
    prob: ChannelProblem,
    method: str = "bnb",
    time_limit: float | None = None,
    rel_gap: float = 0.0,
    *,
    node_limit: int | None = None,
    verbose: bool = False,
) -> ChannelResult:
    r"""Solve the channel-selection QCQP.

    Parameters
    ----------
    prob : ChannelProblem.
    method : ``"bnb"`` (default; our exact branch-and-bound), ``"cpsat"`` (OR-Tools CP-SAT), ``"highs"`` (F1
        McCormick MILP, HiGHS via scipy), ``"cbc"`` (the same MILP, CBC via PuLP) or ``"greedy"`` (the original
        work's heuristic; no bound).
    time_limit : seconds, or None for no limit. On expiry the best solution found is returned with status
        ``"time_limit"`` and the proven ``bound`` and ``gap``. ``"bnb"`` checks the limit between its root stages
        and between nodes: it may run past it by one bound evaluation (about 1.5 s on ResNet-20 for the root's
        first bound with blocks; a few milliseconds for a node).
    rel_gap : stop when (bound - objective) / bound <= rel_gap (status "optimal" means within ``rel_gap``).
    node_limit : ("bnb" only) stop after this many nodes of the main search tree with status ``"node_limit"``.
    verbose : ("bnb" only) show a progress bar with the incumbent, bound and gap, and the root stage running.

    Returns
    -------
    ChannelResult with ``keep``, ``keep_out``, ``objective``, ``resource``, ``bound``, ``gap``, ``status``,
    ``seconds``, ``n_nodes``. Every returned selection satisfies every invariant (checked by :meth:`ChannelProblem.
    evaluate` before it is returned). A budget below the smallest network gives status ``"infeasible"`` with the
    minimum in ``message`` and ``min_resource``; a budget at or above the full network returns everything.

    Raises
    ------
    ValueError : unknown method, non-positive time or node limit, ``rel_gap`` outside [0, 1).

    Notes
    -----
    Worst-case exponential for every exact method. ``"bnb"`` is documented in
    :mod:`combax.solvers._channels_bnb`; it is deterministic (ties go to the lowest map and channel index).
    CP-SAT needs integer coefficients: importances are scaled (x1 when they are integers, else 10^6 / max) and
    rounded, resource coefficients scaled by the smallest power of 10 <= 10^6 that makes them integers.
    """
    _solve_iv(prob, method, time_limit, rel_gap, node_limit)
    t0 = time.perf_counter()
    triv = _trivial(prob, method, t0)
    if triv is not None:
        return triv
    g = prob._grouped()
    c = g._c
    from ._channels_greedy import greedy_state, objective_of
    from ._channels_layout import flat, masks_from_matrix

    f = flat(c)
    if method == "greedy":
        U, V, _ = greedy_state(f, c["budget"])
        u, v = masks_from_matrix(f, U, V)
        from ._channels_bnb import root_bound

        bound = max(root_bound(f, c["budget"]), objective_of(f, U, V))
        st = (
            Status.OPTIMAL
            if bound - objective_of(f, U, V) <= rel_gap * bound + 1e-12 * abs(bound)
            else Status.NODE_LIMIT
        )
        return make_result(prob, u, v, st, bound, time.perf_counter() - t0, 0, method,
                           "greedy: no search; bound from the root Lagrangian count DP")  # fmt: skip
    if method == "bnb":
        from ._channels_bnb import branch_and_bound

        out = branch_and_bound(f, c["budget"], time_limit=time_limit, rel_gap=rel_gap, node_limit=node_limit,
                               verbose=verbose, t0=t0)  # fmt: skip
        u, v = masks_from_matrix(f, out.U, out.V)
        return make_result(
            prob, u, v, out.status, out.bound, time.perf_counter() - t0, out.n_nodes, method, out.message
        )
    from . import _channels_refs as refs

    if method == "cpsat":
        U, V, _ = greedy_state(f, c["budget"])
        hint = refs.hint_bits(c, *masks_from_matrix(f, U, V))
        u, v, st, bound, nodes, msg = refs.cpsat(c, time_limit, rel_gap, hint=hint)
    elif method == "highs":
        u, v, st, bound, nodes, msg = refs.highs(c, time_limit, rel_gap)
    else:
        u, v, st, bound, nodes, msg = refs.cbc(c, time_limit, rel_gap)
    return make_result(prob, u, v, st, bound, time.perf_counter() - t0, nodes, method, str(msg))


def brute_force(prob: ChannelProblem) -> ChannelResult:
    """The optimum by enumerating every assignment of the free binaries (at most 22; per group when grouped).

    Vectorised NumPy, independent of every other method (the test oracle). O(2^n * sum_l C_l C_src(l)) time.
    Ties go to the first assignment in binary counting order.
    """
    if not isinstance(prob, ChannelProblem):
        raise TypeError(f"`prob` must be a ChannelProblem; got {type(prob).__name__}")
    from . import _channels_refs as refs

    t0 = time.perf_counter()
    g = prob._grouped()
    u, v, st, bound, nodes, msg = refs.brute_force(g._c)
    if st == Status.INFEASIBLE:
        msg = f"budget {prob.budget:g} is below the smallest valid network's resource {prob.min_resource:g}"
    return make_result(prob, u, v, st, bound, time.perf_counter() - t0, nodes, "brute_force", msg)
