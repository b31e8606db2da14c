"""Reference backends of :mod:`combax.solvers.assign`: OR-Tools, networkx and scipy.

They build the flow networks of the spec (``specs/hash_flow.md`` §1.2 and §1.4) with explicit parallel unit arcs for
the convex load penalties, and solve them with an independent library. Graph building is vectorised with NumPy.

Integer costs: both flow libraries need integer arc costs. Every arc cost is multiplied by
``scale = 2**COST_BITS / max|cost|`` and rounded to int64 (``COST_BITS = 40``), so distinct float scores merge only if
they differ by less than ``max|cost| * 2**-40`` (relative 1e-12). The returned codes are optimal for the rounded
costs; their true energy is within ``n * k * max|cost| * 2**-40`` of the optimum. This replaces the original
implementation's ``int32(1e4 * cost)``, which merged scores closer than 1e-4.
"""

import numpy as np

from combax._optional import require

COST_BITS = 40


def _network(scores, k, lam, gid, n_groups, lam_group):
    """Arc arrays (tails, heads, capacity, float cost), supplies, node count and the index of the unit row arcs.

    Nodes: source 0, rows 1..n, sibling nodes w_{g,r} for groups with >= 2 rows, buckets, sink. Rows alone in their
    group (or every row when ``gid`` is None) go straight to the bucket nodes.
    """
    n, d = scores.shape
    src = 0
    rows = 1 + np.arange(n)
    if gid is not None:
        sizes = np.bincount(gid, minlength=n_groups)
        shared = np.flatnonzero(sizes >= 2)
    else:
        sizes = np.zeros(0, np.int64)
        shared = np.zeros(0, np.int64)
    w_index = np.full(max(n_groups, 1), -1, np.int64)
    w_index[shared] = np.arange(shared.size)
    w0 = 1 + n
    b0 = w0 + shared.size * d
    sink = b0 + d
    n_nodes = sink + 1

    tails, heads, caps, costs = [], [], [], []
    # source -> row, capacity k
    tails.append(np.full(n, src))
    heads.append(rows)
    caps.append(np.full(n, k))
    costs.append(np.zeros(n))
    # row -> sibling node or bucket, capacity 1, cost -score
    row_t = np.repeat(rows, d)
    bucket = np.tile(np.arange(d), n)
    if gid is not None:
        wi = np.repeat(w_index[gid], d)
        row_h = np.where(wi >= 0, w0 + wi * d + bucket, b0 + bucket)
    else:
        row_h = b0 + bucket
    first_unit = n
    tails.append(row_t)
    heads.append(row_h)
    caps.append(np.ones(n * d, np.int64))
    costs.append(-scores.ravel())
    # sibling node w_{g,r} -> bucket r: |g| parallel unit copies, cost (q-1) * lam_group
    for g in shared:
        m = int(sizes[g])
        w_nodes = w0 + w_index[g] * d + np.arange(d)
        tails.append(np.repeat(w_nodes, m))
        heads.append(np.repeat(b0 + np.arange(d), m))
        caps.append(np.ones(d * m, np.int64))
        costs.append(np.tile(np.arange(m) * lam_group, d))
    # bucket -> sink: n parallel unit copies, cost (q-1) * lam
    tails.append(np.repeat(b0 + np.arange(d), n))
    heads.append(np.full(d * n, sink))
    caps.append(np.ones(d * n, np.int64))
    costs.append(np.tile(np.arange(n) * float(lam), d))

    supply = np.zeros(n_nodes, np.int64)
    supply[src] = n * k
    supply[sink] = -n * k
    return (
        np.concatenate(tails).astype(np.int64),
        np.concatenate(heads).astype(np.int64),
        np.concatenate(caps).astype(np.int64),
        np.concatenate(costs).astype(np.float64),
        supply,
        n_nodes,
        first_unit,
    )


def integer_costs(cost):
    """``cost`` scaled by ``2**COST_BITS / max|cost|`` and rounded to int64 (all zeros stay zeros)."""
    top = float(np.max(np.abs(cost))) if cost.size else 0.0
    scale = 2.0**COST_BITS / top if top > 0 else 1.0
    return np.rint(cost * scale).astype(np.int64)


def codes_ortools(scores, k, lam, gid, n_groups, lam_group):
    """Codes from OR-Tools ``SimpleMinCostFlow`` (cost-scaling push-relabel) with the vectorised arc API."""
    mcf_mod = require("ortools.graph.python.min_cost_flow", "ref", "the OR-Tools backend")
    n, d = scores.shape
    tails, heads, caps, cost, supply, n_nodes, first = _network(scores, k, lam, gid, n_groups, lam_group)
    smcf = mcf_mod.SimpleMinCostFlow()
    arcs = smcf.add_arcs_with_capacity_and_unit_cost(tails, heads, caps, integer_costs(cost))
    smcf.set_nodes_supplies(np.arange(n_nodes), supply)
    status = smcf.solve()
    if status != smcf.OPTIMAL:
        raise RuntimeError(f"OR-Tools min-cost flow ended with status {status}")
    flows = smcf.flows(arcs[first : first + n * d])
    return flows.reshape(n, d) > 0


def codes_networkx(scores, k, lam, gid, n_groups, lam_group):
    """Codes from networkx ``network_simplex`` on a MultiDiGraph (parallel arcs kept as parallel edges)."""
    nx = require("networkx", "ref", "the networkx backend")
    n, d = scores.shape
    tails, heads, caps, cost, supply, n_nodes, first = _network(scores, k, lam, gid, n_groups, lam_group)
    icost = integer_costs(cost)
    g = nx.MultiDiGraph()
    g.add_nodes_from((v, {"demand": -int(supply[v])}) for v in range(n_nodes))
    keys = g.add_edges_from(
        (int(t), int(h), {"capacity": int(c), "weight": int(w)}) for t, h, c, w in zip(tails, heads, caps, icost)
    )
    _, flow_dict = nx.network_simplex(g)
    flows = np.array([flow_dict[int(t)][int(h)][key] for t, h, key in zip(tails, heads, keys)])
    return flows[first : first + n * d].reshape(n, d) > 0


def labels_scipy(cost, lam):
    """CascadeVAE labels from scipy ``linear_sum_assignment`` on the slot-expanded (n, n*S) cost matrix.

    Slot q of category c costs ``cost[:, c] + q * lam``; increasing slot costs make the assignment optimum equal the
    convex-penalty optimum.
    """
    from scipy.optimize import linear_sum_assignment

    n, n_cat = cost.shape
    expanded = np.repeat(cost, n, axis=1) + np.tile(np.arange(n) * float(lam), n_cat)[None, :]
    _, col = linear_sum_assignment(expanded)
    return (col // n).astype(np.int64)
