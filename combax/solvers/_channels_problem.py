"""The channel-selection problem container, its validator, evaluation, grouping and file format.

Internal canonical form (used by every solver of :mod:`combax.solvers.channels`): maps 0..M, map 0 the input (all
channels kept); conv ``k`` (``k = 0..M-1``) is the unique producer of map ``k + 1`` and reads map ``src[k] <= k``.
The binaries are ``u[t]`` (outputs kept by the producer of map ``t``) and, for residual targets, ``v[t]`` (channels
of map ``t`` that its readers see, after the add). For maps that are not residual targets ``v[t] is u[t]``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

RESIDUAL_KINDS = ("identity", "zero_pad", "projection")
KIND_CODE = {"identity": 1, "zero_pad": 2, "projection": 3}


@dataclass(frozen=True, slots=True)
class ChannelEvaluation:
    """Objective, resource and broken invariants of a selection (see :meth:`ChannelProblem.evaluate`).

    Attributes
    ----------
    objective : float, the total importance of the kept weights, sum_l u^(l)T I^(l) v^(src l).
    resource : float, sum_l c_l n_l m_src(l) + c_in m_src(l) + c_out n_l + c_0.
    violations : tuple of str, one message per broken invariant; empty when the selection is feasible.
    """

    objective: float
    resource: float
    violations: tuple[str, ...]

    @property
    def feasible(self) -> bool:
        return not self.violations


def _as_matrix(a, name, shape):
    arr = np.asarray(a, dtype=np.float64)
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape} (C_dst, C_src); got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite; it contains NaN or inf")
    if np.any(arr < 0):
        raise ValueError(f"{name} must be non-negative; its minimum is {arr.min():g}")
    return np.ascontiguousarray(arr)


def _channel_problem_iv(prob: ChannelProblem) -> dict:
    """Validate the user's inputs and return the canonical arrays (see the module docstring)."""
    widths = np.asarray(prob.widths)
    if widths.ndim != 1 or widths.size < 2:
        raise ValueError(f"`widths` must be a 1-D sequence of at least 2 map widths; got shape {widths.shape}")
    if not np.issubdtype(widths.dtype, np.integer):
        if not np.all(np.asarray(widths, dtype=float) == np.round(np.asarray(widths, dtype=float))):
            raise ValueError(f"`widths` must be integers; got {widths.tolist()}")
    widths = widths.astype(np.int64)
    if np.any(widths < 1):
        raise ValueError(f"`widths` must be >= 1; got {widths.tolist()}")
    n_maps = widths.size - 1
    convs = list(prob.convs)
    if len(convs) != n_maps:
        raise ValueError(f"`convs` must hold one conv per non-input map ({n_maps}); got {len(convs)}")
    src = np.full(n_maps, -1, dtype=np.int64)
    order = np.full(n_maps, -1, dtype=np.int64)  # order[k]: index in the user's list of the conv producing map k+1
    mats = [None] * n_maps
    for idx, conv in enumerate(convs):
        if len(conv) != 3:
            raise ValueError(f"`convs[{idx}]` must be (src_map, dst_map, importance); got {len(conv)} items")
        s, d, imp = conv
        s, d = int(s), int(d)
        if not 1 <= d <= n_maps:
            raise ValueError(f"`convs[{idx}]` dst map must be in [1, {n_maps}]; got {d}")
        if not 0 <= s < d:
            raise ValueError(f"`convs[{idx}]` src map must be in [0, dst) = [0, {d}); got {s}")
        if order[d - 1] >= 0:
            raise ValueError(f"map {d} is produced by `convs[{order[d - 1]}]` and `convs[{idx}]`; expected one conv")
        order[d - 1] = idx
        src[d - 1] = s
        mats[d - 1] = _as_matrix(imp, f"`convs[{idx}]` importance", (int(widths[d]), int(widths[s])))
    read = np.zeros(n_maps + 1, dtype=bool)
    read[src] = True
    if not np.all(read[:-1]):
        raise ValueError(
            f"every map but the last must be read by a conv; maps {np.flatnonzero(~read[:-1]).tolist()} are not"
        )

    cost = np.asarray(prob.cost, dtype=np.float64)
    if cost.shape != (n_maps,):
        raise ValueError(f"`cost` must have one entry per conv, shape ({n_maps},); got {cost.shape}")
    if not np.all(np.isfinite(cost)) or np.any(cost < 0):
        raise ValueError(f"`cost` must be finite and non-negative; got {cost.tolist()}")
    cost = cost[order]
    if prob.linear_cost is None:
        lin = np.zeros((n_maps, 3))
    else:
        lin = np.asarray(prob.linear_cost, dtype=np.float64)
        if lin.shape != (n_maps, 3):
            raise ValueError(
                f"`linear_cost` must have shape ({n_maps}, 3) (c_in, c_out, c_0 per conv); got {lin.shape}"
            )
        if not np.all(np.isfinite(lin)) or np.any(lin[:, :2] < 0):
            raise ValueError("`linear_cost` must be finite with non-negative c_in and c_out (c_0 may be negative)")
        lin = lin[order]
    budget = float(prob.budget)
    if not np.isfinite(budget):
        raise ValueError(f"`budget` must be finite; got {budget}")

    res_src = np.full(n_maps + 1, -1, dtype=np.int64)
    res_kind = np.zeros(n_maps + 1, dtype=np.int64)
    for idx, r in enumerate(prob.residuals):
        if len(r) != 3:
            raise ValueError(f"`residuals[{idx}]` must be (src_map, dst_map, kind); got {len(r)} items")
        s, t, kind = int(r[0]), int(r[1]), str(r[2])
        if kind not in KIND_CODE:
            raise ValueError(f"`residuals[{idx}]` kind must be one of {RESIDUAL_KINDS}; got {kind!r}")
        if not 1 <= t <= n_maps or not 0 <= s < t:
            raise ValueError(f"`residuals[{idx}]` needs 0 <= src < dst <= {n_maps}; got ({s}, {t})")
        if res_kind[t]:
            raise ValueError(f"map {t} is the target of two residuals; expected at most one")
        if kind == "identity" and widths[s] != widths[t]:
            raise ValueError(f"`residuals[{idx}]` identity needs equal widths; got {widths[s]} and {widths[t]}")
        if kind == "zero_pad" and widths[s] >= widths[t]:
            raise ValueError(f"`residuals[{idx}]` zero_pad needs C_src < C_dst; got {widths[s]} and {widths[t]}")
        res_src[t], res_kind[t] = s, KIND_CODE[kind]

    group = prob.group_size
    if group is None:
        group = np.ones(n_maps + 1, dtype=np.int64)
    else:
        group = np.broadcast_to(np.asarray(group), (n_maps + 1,)).astype(np.int64)
        group[0] = 1  # the input map is fixed (always fully kept): it is never grouped
        if np.any(group < 1) or np.any(widths % group):
            raise ValueError(f"`group_size` must divide every width {widths.tolist()}; got {group.tolist()}")
        for t in np.flatnonzero(res_kind):
            s = res_src[t]
            if res_kind[t] in (1, 2) and (group[s] != group[t] or widths[s] % group[t]):
                raise ValueError(
                    f"residual {s}->{t} needs equal group sizes dividing both widths; got {group[s]}, {group[t]}"
                )
    kmin = _min_keep_iv(prob.min_keep, widths)
    return dict(
        widths=widths, src=src, mats=mats, cost=cost, lin=lin, budget=budget, res_src=res_src, res_kind=res_kind,
        order=order, group=group, kmin=kmin,
    )  # fmt: skip


def _min_keep_iv(min_keep, widths) -> np.ndarray:
    """The canonical per-map minimum of kept channels: (M + 1,) int64, channel units, entry 0 = C_0 (the input)."""
    n_maps = widths.size - 1
    kmin = np.ones(n_maps + 1, dtype=np.int64)
    if min_keep is not None:
        arr = np.asarray(min_keep)
        if arr.ndim == 0:
            arr = np.full(n_maps + 1, arr)
        elif arr.shape != (n_maps + 1,):
            raise ValueError(
                f"`min_keep` must be an int or a sequence of M + 1 = {n_maps + 1} ints (one per map, entry 0 ignored); "
                f"got shape {arr.shape}"
            )
        integral = np.issubdtype(arr.dtype, np.integer) or (
            np.issubdtype(arr.dtype, np.floating) and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr))
        )
        if not integral:
            raise ValueError(f"`min_keep` must be integers (channels kept per map); got {arr.tolist()}")
        kmin = arr.astype(np.int64)
        for t in range(1, n_maps + 1):
            if not 1 <= kmin[t] <= widths[t]:
                raise ValueError(
                    f"`min_keep` of map {t} must be in [1, {widths[t]}] (at least one channel, at most the map's "
                    f"width); got {kmin[t]}"
                )
    kmin[0] = widths[0]  # the input map is always fully kept
    return kmin


@dataclass(frozen=True, slots=True)
class ChannelProblem:
    r"""A channel-selection problem: a binary QCQP over kept channels (Jeong et al., AISTATS 2022).

    .. math::

        \max_{u, v \in \{0,1\}} \sum_l u^{(l)\top} I^{(l)} v^{(s_l)}
        \quad\text{s.t.}\quad \sum_l c_l\, n_l m_{s_l} + c^{in}_l m_{s_l} + c^{out}_l n_l + c^0_l \le B,

    with :math:`n_l = \lVert u^{(l)}\rVert_1`, :math:`m_s = \lVert v^{(s)}\rVert_1`, :math:`v^{(0)} = 1`,
    :math:`\lVert u^{(t)}\rVert_1 \ge k_t \ge 1` for every map t >= 1 (``min_keep``; by default k_t = 1: no empty
    layer), :math:`v^{(t)} \equiv u^{(t)}` for maps that are not residual targets, and for a residual s -> t:
    identity ``u_t <= v_t <= u_t + v_s``; zero_pad the same for ``j < C_s`` and ``v_t = u_t`` above; projection
    ``u_t <= v_t``. These are the "no inactive weight" constraints: every kept weight has a live input and output,
    every live channel a producer and a consumer. Since :math:`v^{(t)} \supseteq u^{(t)}` on residual targets,
    :math:`\lVert v^{(t)}\rVert_1 \ge k_t` follows there too.

    Parameters
    ----------
    widths : sequence of int, (M + 1,), channel counts C_0..C_M; map 0 is the input (always kept).
    convs : sequence of (src_map, dst_map, importance) with importance (C_dst, C_src) float >= 0; exactly one conv
        produces each map 1..M, and src < dst.
    cost : (M,) float >= 0, per conv (in the order of ``convs``): resource per kept (out, in) channel pair, e.g.
        K^2 H W for FLOPs or K^2 for parameters.
    budget : float, B.
    residuals : sequence of (src_map, dst_map, kind), kind in ``"identity"``, ``"zero_pad"``, ``"projection"``.
    linear_cost : (M, 3) float or None, per conv (c_in, c_out, c_0) of the fitted latency model; c_in, c_out >= 0.
    group_size : int or (M + 1,) ints or None. One binary per group of g consecutive channels (tile units); the
        group's importance is its summed importance and the resource counts channels (g per group). The entry of
        map 0 is ignored: the input is fixed.
    min_keep : int or (M + 1,) ints or None. The least number of output channels the conv producing map t keeps,
        :math:`k_t` with ``1 <= k_t <= C_t`` (e.g. to avoid layer collapse). None: 1 for every map; an int: the same
        for maps 1..M; a sequence: one per map, entry 0 (the input, always fully kept) ignored. In channels; with
        channel groups of size g the minimum is rounded up to whole groups, ceil(k_t / g) groups.

    Raises
    ------
    ValueError : shape mismatch, negative or non-finite importance or cost, bad map indices, unknown residual kind,
        group sizes that do not divide the widths, ``min_keep`` not integer or outside [1, C_t].
    """

    widths: tuple
    convs: tuple
    cost: tuple
    budget: float
    residuals: tuple = ()
    linear_cost: object = None
    group_size: object = None
    min_keep: object = None
    _c: dict = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "_c", _channel_problem_iv(self))

    # ------------------------------------------------------------------ basic quantities
    @property
    def n_maps(self) -> int:
        """M, the number of non-input maps (= number of convs)."""
        return len(self._c["widths"]) - 1

    @property
    def n_binaries(self) -> int:
        """Number of free binaries (per group when grouped): u for maps 1..M plus v for residual targets."""
        c = self._c
        w = c["widths"] // c["group"]
        n = int(w[1:].sum())
        for t in np.flatnonzero(c["res_kind"]):
            n += int(w[c["res_src"][t]]) if c["res_kind"][t] == 2 else int(w[t])
        return n

    @property
    def n_bilinear(self) -> int:
        """Number of bilinear terms sum_l C_l C_src(l) (channel units)."""
        c = self._c
        return int(sum(c["widths"][k + 1] * c["widths"][c["src"][k]] for k in range(self.n_maps)))

    def with_budget(self, budget: float) -> ChannelProblem:
        """The same problem with another budget."""
        return dataclasses.replace(self, budget=float(budget))

    def _resource_counts(self, n_out, m_in) -> float:
        c = self._c
        n_out = np.asarray(n_out, dtype=np.float64)
        m_in = np.asarray(m_in, dtype=np.float64)
        return float(np.sum(c["cost"] * n_out * m_in + c["lin"][:, 0] * m_in + c["lin"][:, 1] * n_out + c["lin"][:, 2]))

    @property
    def min_counts(self) -> np.ndarray:
        """(M + 1,) int: per map, the least number of kept channels of a valid selection, ``min_keep`` rounded up to
        whole groups (1 or one group by default); entry 0 is C_0 (the input is always whole)."""
        c = self._c
        g = c["group"]
        return -(-c["kmin"] // g) * g

    @property
    def min_resource(self) -> float:
        """Resource of the smallest valid network: n_t = m_t = ``min_keep[t]`` (rounded up to whole groups) for
        every map t >= 1, the input fully kept, and v_t = u_t along residual streams (valid for every residual kind).
        The resource grows with every count, so no valid selection uses less."""
        c = self._c
        n = self.min_counts
        return self._resource_counts(n[1:], n[c["src"]])

    @property
    def full_resource(self) -> float:
        """Resource of the unpruned network."""
        c = self._c
        return self._resource_counts(c["widths"][1:], c["widths"][c["src"]])

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, keep_out, keep) -> ChannelEvaluation:
        """Recompute objective and resource from masks, and list every broken invariant.

        Parameters
        ----------
        keep_out : sequence of M bool arrays, per conv in the order of ``convs``: kept outputs (u), length C_dst.
        keep : sequence of M + 1 bool arrays, per map: kept channels after any residual add (v), length C_t.

        Returns
        -------
        ChannelEvaluation with ``objective``, ``resource`` and ``violations`` (empty iff feasible and within budget).
        The resource is recomputed from the physically pruned shapes: a conv keeps ``sum(keep_out) x sum(keep[src])``
        channel pairs.
        """
        c = self._c
        m = self.n_maps
        if len(keep_out) != m or len(keep) != m + 1:
            raise ValueError(f"`keep_out` needs {m} masks and `keep` {m + 1}; got {len(keep_out)} and {len(keep)}")
        v = [np.asarray(k, dtype=bool) for k in keep]
        u = [None] + [np.asarray(keep_out[c["order"][k]], dtype=bool) for k in range(m)]
        for t in range(m + 1):
            if v[t].shape != (c["widths"][t],):
                raise ValueError(f"`keep[{t}]` must have shape ({c['widths'][t]},); got {v[t].shape}")
            if t and u[t].shape != (c["widths"][t],):
                raise ValueError(f"`keep_out` mask of map {t} must have shape ({c['widths'][t]},); got {u[t].shape}")
        bad = []
        if not v[0].all():
            bad.append("map 0 (the input) must be fully kept")
        obj = 0.0
        n_out = np.zeros(m)
        m_in = np.zeros(m)
        for k in range(m):
            t, s = k + 1, c["src"][k]
            obj += float(u[t].astype(np.float64) @ c["mats"][k] @ v[s].astype(np.float64))
            n_out[k], m_in[k] = u[t].sum(), v[s].sum()
            if not u[t].any():
                bad.append(f"conv producing map {t} keeps no output channel")
            elif n_out[k] < c["kmin"][t]:
                bad.append(
                    f"conv producing map {t} keeps {int(n_out[k])} output channels, fewer than `min_keep` "
                    f"{c['kmin'][t]}"
                )
            if not v[t].any():
                bad.append(f"map {t} keeps no channel")
            kind, rs = c["res_kind"][t], c["res_src"][t]
            if kind == 0 and not np.array_equal(u[t], v[t]):
                bad.append(f"map {t} is no residual target, so keep must equal keep_out")
            if kind and np.any(u[t] & ~v[t]):
                bad.append(f"map {t}: a kept conv output feeds a dropped channel (inactive weights)")
            if kind in (1, 2):
                cs = c["widths"][rs]
                fed = u[t].copy()
                fed[:cs] |= v[rs]
                if np.any(v[t] & ~fed):
                    bad.append(f"map {t}: a kept channel has no producer (neither conv output nor shortcut)")
            g = c["group"][t]
            if g > 1:
                for arr, what in ((u[t], "keep_out"), (v[t], "keep")):
                    blocks = arr.reshape(-1, g)
                    if np.any(blocks.any(1) != blocks.all(1)):
                        bad.append(f"map {t}: {what} splits a channel group of size {g}")
        res = self._resource_counts(n_out, m_in)
        if res > self.budget * (1 + 1e-12) + 1e-9:
            bad.append(f"resource {res:g} exceeds the budget {self.budget:g}")
        return ChannelEvaluation(obj, res, tuple(bad))

    # ------------------------------------------------------------------ grouping
    def _grouped(self) -> ChannelProblem:
        """The equivalent problem with one channel per group (itself when every group size is 1)."""
        c = self._c
        g = c["group"]
        if np.all(g == 1):
            return self
        w = c["widths"] // g
        convs = []
        for k in range(self.n_maps):
            t, s = k + 1, c["src"][k]
            a = c["mats"][k].reshape(w[t], g[t], c["widths"][s]).sum(1)
            gs = 1 if s == 0 else g[s]  # map 0 is fixed; keep its channels as they are
            a = a.reshape(w[t], c["widths"][s] // gs, gs).sum(2)
            convs.append((s, t, a))
        gs = np.where(c["src"] == 0, 1, g[c["src"]])
        cost = c["cost"] * g[1:] * gs
        lin = c["lin"].copy()
        lin[:, 0] *= gs
        lin[:, 1] *= g[1:]
        widths = w.copy()
        widths[0] = c["widths"][0]
        residuals = [
            (int(c["res_src"][t]), int(t), RESIDUAL_KINDS[c["res_kind"][t] - 1]) for t in np.flatnonzero(c["res_kind"])
        ]
        kmin = -(-c["kmin"] // g)  # the minimum in whole groups (entry 0 is ignored)
        return ChannelProblem(widths, convs, cost, self.budget, residuals, lin, None, kmin)

    def _expand(self, u_grouped, v_grouped):
        """Channel masks (canonical order) from masks of :meth:`_grouped`."""
        g = self._c["group"]
        if np.all(g == 1):
            return u_grouped, v_grouped
        u = [None] + [np.repeat(u_grouped[t], g[t]) for t in range(1, self.n_maps + 1)]
        v = [np.ones(self._c["widths"][0], bool)] + [np.repeat(v_grouped[t], g[t]) for t in range(1, self.n_maps + 1)]
        return u, v

    # ------------------------------------------------------------------ file format
    def save(self, path) -> None:
        """Write the problem to an ``.npz`` file (layout in :func:`load_problem`)."""
        c = self._c
        arrays = {
            "widths": c["widths"],
            "conv_src": c["src"],
            "conv_dst": np.arange(1, self.n_maps + 1),
            "cost": c["cost"],
            "linear_cost": c["lin"],
            "budget": np.float64(self.budget),
            "residual_src": c["res_src"][c["res_kind"] > 0],
            "residual_dst": np.flatnonzero(c["res_kind"]),
            "residual_kind": np.array([RESIDUAL_KINDS[k - 1] for k in c["res_kind"][c["res_kind"] > 0]], dtype="U10"),
            "group_size": c["group"],
            "min_keep": c["kmin"],
        }
        for k, mat in enumerate(c["mats"]):
            arrays[f"importance_{k}"] = mat
        np.savez_compressed(Path(path), **arrays)


def load_problem(path, budget=None) -> ChannelProblem:
    """Read a problem written by :meth:`ChannelProblem.save`.

    The ``.npz`` layout (M convs, R residuals): ``widths`` (M+1,) int; ``conv_src``, ``conv_dst`` (M,) int;
    ``importance_<k>`` (C_dst, C_src) float for conv k; ``cost`` (M,) float; optional ``linear_cost`` (M, 3);
    ``budget`` scalar (optional if ``budget`` is given); optional ``residual_src``, ``residual_dst`` (R,) int and
    ``residual_kind`` (R,) str; optional ``group_size`` (M+1,) int; optional ``min_keep`` (M+1,) int, the least
    number of kept channels per map (entry 0 ignored; absent: 1 per map).
    """
    with np.load(Path(path), allow_pickle=False) as z:
        src, dst = z["conv_src"], z["conv_dst"]
        convs = [(int(s), int(d), z[f"importance_{k}"]) for k, (s, d) in enumerate(zip(src, dst))]
        if budget is None:
            if "budget" not in z:
                raise ValueError(f"{path} holds no `budget`; pass one")
            budget = float(z["budget"])
        residuals = ()
        if "residual_src" in z:
            residuals = [
                (int(s), int(t), str(k)) for s, t, k in zip(z["residual_src"], z["residual_dst"], z["residual_kind"])
            ]
        lin = z["linear_cost"] if "linear_cost" in z else None
        group = z["group_size"] if "group_size" in z else None
        min_keep = z["min_keep"] if "min_keep" in z else None
        return ChannelProblem(z["widths"], convs, z["cost"], float(budget), residuals, lin, group, min_keep)
