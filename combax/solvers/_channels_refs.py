"""Reference solvers for the channel QCQP: brute force, F1 McCormick MILP (HiGHS, CBC) and CP-SAT.

Every function takes the canonical dict ``c`` of a group-free problem and returns
``(u, v, status, bound, n_nodes, message)`` with ``u``/``v`` lists of bool masks per map (or None).
"""

from __future__ import annotations

import numpy as np

from ._channels_layout import bilinear_pairs, f1_model, layout, linear_rows
from ._status import Status

BRUTE_FORCE_MAX_BINARIES = 22


def _masks_from_bits(c, lay, x):
    m = len(c["widths"]) - 1
    x = np.asarray(x) > 0.5
    u = [None] + [x[lay.uvar[t]] for t in range(1, m + 1)]
    v = [np.ones(c["widths"][0], bool)] + [x[lay.vvar[t]] for t in range(1, m + 1)]
    return u, v


def brute_force(c: dict):
    """Enumerate every assignment of the free binaries (vectorised, in chunks); ties go to the first in order."""
    lay = layout(c)
    if lay.n > BRUTE_FORCE_MAX_BINARIES:
        raise ValueError(f"`prob` has {lay.n} binaries; brute force takes at most {BRUTE_FORCE_MAX_BINARIES}")
    m = len(c["widths"]) - 1
    best, best_x = -np.inf, None
    chunk = 1 << min(lay.n, 16)
    bits = np.arange(lay.n, dtype=np.int64)
    for start in range(0, 1 << lay.n, chunk):
        idx = np.arange(start, start + chunk, dtype=np.int64)
        x = ((idx[:, None] >> bits[None, :]) & 1).astype(bool)
        ones0 = np.ones((chunk, c["widths"][0]), bool)
        u = [None] + [x[:, lay.uvar[t]] for t in range(1, m + 1)]
        v = [ones0] + [x[:, lay.vvar[t]] for t in range(1, m + 1)]
        ok = np.ones(chunk, bool)
        obj = np.zeros(chunk)
        res = np.zeros(chunk)
        for k in range(m):
            t, s = k + 1, c["src"][k]
            ok &= (u[t].sum(1) >= c["kmin"][t]) & (v[t].sum(1) >= c["kmin"][t])  # min_keep (>= 1: non-empty)
            obj += np.einsum("bj,bj->b", u[t].astype(float), v[s].astype(float) @ c["mats"][k].T)
            n, mm = u[t].sum(1), v[s].sum(1)
            res += c["cost"][k] * n * mm + c["lin"][k, 0] * mm + c["lin"][k, 1] * n + c["lin"][k, 2]
            kind = c["res_kind"][t]
            if kind:
                ok &= ~np.any(u[t] & ~v[t], axis=1)
            if kind in (1, 2):
                fed = u[t].copy()
                fed[:, : c["widths"][c["res_src"][t]]] |= v[c["res_src"][t]]
                ok &= ~np.any(v[t] & ~fed, axis=1)
        ok &= res <= c["budget"]
        if ok.any():
            obj = np.where(ok, obj, -np.inf)
            i = int(np.argmax(obj))
            if obj[i] > best:
                best, best_x = obj[i], x[i]
    if best_x is None:
        return None, None, Status.INFEASIBLE, np.nan, 0, "no assignment satisfies the budget"
    u, v = _masks_from_bits(c, lay, best_x)
    return u, v, Status.OPTIMAL, float(best), 1 << lay.n, f"enumerated {1 << lay.n} assignments"


def highs(c: dict, time_limit=None, rel_gap=0.0):
    """F1 (full McCormick) MILP solved by HiGHS through :func:`scipy.optimize.milp`."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    lay = layout(c)
    model = f1_model(c, lay)
    n = lay.n
    p = len(model.pu)
    a, obj = model.a, -model.obj
    integrality = np.concatenate([np.ones(n), np.zeros(p)])
    options = {"mip_rel_gap": float(rel_gap)}
    if time_limit is not None:
        options["time_limit"] = float(time_limit)
    res = milp(obj, constraints=LinearConstraint(a, model.lo, model.hi),
               integrality=integrality, bounds=Bounds(0, 1), options=options)  # fmt: skip
    bound = -getattr(res, "mip_dual_bound", np.nan) if getattr(res, "mip_dual_bound", None) is not None else np.nan
    if res.status == 2:
        return None, None, Status.INFEASIBLE, np.nan, 0, res.message
    node_count = int(getattr(res, "mip_node_count", 0) or 0)
    status = Status.OPTIMAL if res.status == 0 else Status.TIME_LIMIT
    if res.x is None:
        return None, None, status, bound, node_count, res.message
    u, v = _masks_from_bits(c, lay, res.x[:n])
    return u, v, status, bound, node_count, res.message


def lp_relaxation(c: dict) -> float:
    """The optimum of the F1 model with the binaries relaxed to [0, 1], by HiGHS (the oracle of the B&B's
    approximate LP duals, `_channels_lp`)."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    model = f1_model(c, layout(c))
    res = milp(-model.obj, constraints=LinearConstraint(model.a, model.lo, model.hi), bounds=Bounds(0, 1))
    if res.status != 0:
        raise RuntimeError(f"F1 LP relaxation: {res.message}")
    return float(-res.fun)


def cbc(c: dict, time_limit=None, rel_gap=0.0):
    """F1 (full McCormick) MILP solved by CBC through PuLP."""
    from combax._optional import require

    pulp = require("pulp", "ref", "the CBC reference")
    lay = layout(c)
    pu, pv, pimp, pcost, lin_obj, lin_res, const_res = bilinear_pairs(c, lay)
    model = pulp.LpProblem("channels", pulp.LpMaximize)
    x = [pulp.LpVariable(f"x{i}", cat="Binary") for i in range(lay.n)]
    y = [pulp.LpVariable(f"y{i}", lowBound=0, upBound=1) for i in range(len(pu))]
    model += pulp.lpSum(lin_obj[i] * x[i] for i in range(lay.n) if lin_obj[i]) + pulp.lpSum(
        pimp[q] * y[q] for q in range(len(pu)) if pimp[q]
    )
    for q in range(len(pu)):
        model += y[q] <= x[pu[q]]
        model += y[q] <= x[pv[q]]
        model += y[q] >= x[pu[q]] + x[pv[q]] - 1
    model += (
        pulp.lpSum(lin_res[i] * x[i] for i in range(lay.n) if lin_res[i])
        + pulp.lpSum(pcost[q] * y[q] for q in range(len(pu)))
        <= c["budget"] - const_res
    )
    for coef, l_, h_, _ in linear_rows(c, lay):
        e = pulp.lpSum(w * x[i] for i, w in coef.items())
        if np.isfinite(l_):
            model += e >= l_
        if np.isfinite(h_):
            model += e <= h_
    kw = {"msg": 0, "gapRel": float(rel_gap)}
    if time_limit is not None:
        kw["timeLimit"] = float(time_limit)
    model.solve(pulp.PULP_CBC_CMD(**kw))
    st = pulp.LpStatus[model.status]
    if st == "Infeasible":
        return None, None, Status.INFEASIBLE, np.nan, 0, st
    vals = np.array([v.value() if v.value() is not None else 0.0 for v in x])
    if st != "Optimal" or model.sol_status != 1:
        if model.sol_status in (1, 2):
            u, v = _masks_from_bits(c, lay, vals)
            return u, v, Status.TIME_LIMIT, np.nan, 0, st
        return None, None, Status.TIME_LIMIT, np.nan, 0, st
    u, v = _masks_from_bits(c, lay, vals)
    return u, v, Status.OPTIMAL, np.nan, 0, st


def _integer_scale(vals, max_pow=6):
    """Smallest 10^d (d <= max_pow) turning every value into an integer (to 1e-9), or None."""
    vals = np.asarray(vals, dtype=float)
    for d in range(max_pow + 1):
        s = 10.0**d
        if np.all(np.abs(vals * s - np.round(vals * s)) <= 1e-9 * np.maximum(1, np.abs(vals * s))):
            return s
    return None


def cpsat(c: dict, time_limit=None, rel_gap=0.0, hint=None, num_workers=2, objective_scale=None):
    """CP-SAT on bools u, v, products y = u AND v for the objective, exact integer count products for the resource.

    Importances are scaled to integers by ``objective_scale`` (default: 1 when every importance is an integer,
    else 10^6 / max importance) and rounded; resource coefficients and budget are scaled by the smallest power of 10
    (up to 10^6) that makes them integers, otherwise by 10^6 / max coefficient with coefficients rounded up and the
    budget rounded down (so every CP-SAT solution is feasible; optimality is then for the scaled model).
    """
    from combax._optional import require

    cp_model = require("ortools.sat.python.cp_model", "ref", "the CP-SAT reference")
    lay = layout(c)
    m = len(c["widths"]) - 1
    allimp = np.concatenate([a.ravel() for a in c["mats"]])
    if objective_scale is None:
        objective_scale = 1.0 if _integer_scale(allimp, 0) and allimp.max() < 2**40 else 1e6 / max(allimp.max(), 1e-300)
    coefs = np.concatenate([c["cost"], c["lin"].ravel(), [c["budget"]]])
    rs = _integer_scale(coefs)
    if rs is None:
        rs = 1e6 / max(np.abs(coefs).max(), 1e-300)
        rnd_up, budget_int = np.ceil, int(np.floor(c["budget"] * rs))
    else:
        rnd_up, budget_int = np.round, int(round(c["budget"] * rs))
    model = cp_model.CpModel()
    x = [model.NewBoolVar(f"x{i}") for i in range(lay.n)]
    obj_terms = []
    res_terms = []
    const = 0
    for k in range(m):
        t, s = k + 1, c["src"][k]
        a = np.round(c["mats"][k] * objective_scale).astype(np.int64)
        uu, vv = lay.uvar[t], lay.vvar[s]
        n_t = sum(x[i] for i in uu)
        cc = int(rnd_up(c["cost"][k] * rs))
        cin, cout, c0 = (int(rnd_up(w * rs)) for w in c["lin"][k])
        const += c0
        if s == 0:
            obj_terms += [int(a[j].sum()) * x[uu[j]] for j in range(len(uu)) if a[j].sum()]
            res_terms.append((cc * c["widths"][0] + cout) * n_t)
            const += cin * int(c["widths"][0])
            continue
        for j in range(len(uu)):
            for i in range(len(vv)):
                if a[j, i] > 0:
                    yv = model.NewBoolVar("")
                    model.AddImplication(yv, x[uu[j]])
                    model.AddImplication(yv, x[vv[i]])
                    obj_terms.append(int(a[j, i]) * yv)
        nv = model.NewIntVar(1, len(uu), "")
        mv = model.NewIntVar(1, len(vv), "")
        model.Add(nv == n_t)
        model.Add(mv == sum(x[i] for i in vv))
        pv = model.NewIntVar(1, len(uu) * len(vv), "")
        model.AddMultiplicationEquality(pv, [nv, mv])
        res_terms += [cc * pv, cin * mv, cout * nv]
    model.Add(sum(res_terms) + const <= budget_int)
    for coef, l_, h_, _ in linear_rows(c, lay):
        e = sum(int(w) * x[i] for i, w in coef.items())
        if np.isfinite(l_):
            model.Add(e >= int(l_))
        if np.isfinite(h_):
            model.Add(e <= int(h_))
    model.Maximize(sum(obj_terms))
    if hint is not None:
        for i, val in enumerate(hint):
            model.AddHint(x[i], bool(val))
    solver = cp_model.CpSolver()
    if time_limit is not None:
        solver.parameters.max_time_in_seconds = float(time_limit)
    solver.parameters.num_workers = int(num_workers)
    solver.parameters.relative_gap_limit = float(rel_gap)
    solver.parameters.random_seed = 0
    st = solver.Solve(model)
    bound = solver.BestObjectiveBound() / objective_scale
    if st == cp_model.INFEASIBLE:
        return None, None, Status.INFEASIBLE, np.nan, 0, "CP-SAT: infeasible"
    nodes = int(solver.NumBranches())
    msg = f"CP-SAT {solver.StatusName(st)}, objective scale {objective_scale:g}, resource scale {rs:g}"
    if st not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        # no solution found (UNKNOWN): CP-SAT's objective bound is then not a valid upper bound (it reads 0)
        return None, None, Status.TIME_LIMIT, np.nan, nodes, msg
    vals = np.array([solver.Value(xi) for xi in x])
    u, v = _masks_from_bits(c, lay, vals)
    status = Status.OPTIMAL if st == cp_model.OPTIMAL else Status.TIME_LIMIT
    # the integer-rounded objective bound: relax it by the rounding error so that it stays a valid bound
    bound += 0.5 * sum(a.size for a in c["mats"]) / objective_scale if objective_scale != 1.0 else 0.0
    return u, v, status, bound, nodes, msg


def hint_bits(c: dict, u, v):
    """The binary vector of the layout for masks u, v (for CP-SAT hints)."""
    lay = layout(c)
    x = np.zeros(lay.n, bool)
    for t in range(1, len(c["widths"])):
        x[lay.uvar[t]] = u[t]
        x[lay.vvar[t]] = v[t]
    return x
