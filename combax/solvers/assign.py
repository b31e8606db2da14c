r"""k-hot codes under convex bucket penalties: flat hash codes, one compound-code level, CascadeVAE's step.

One exact solver for the family of ``specs/hash_flow.md`` §1.0: every row picks exactly ``k`` distinct buckets,

.. math::

    \max_{z}\; \sum_i C_i^\top z_i \;-\; \lambda \sum_{i<j} z_i^\top z_j
        \;-\; \lambda_g \sum_{i<j,\; g(i)=g(j)} z_i^\top z_j
    \quad\text{s.t.}\quad z_i \in \{0,1\}^d,\ \|z_i\|_1 = k .

With bucket loads :math:`\ell_r = \sum_i z_{ir}` the pair terms are :math:`\lambda\sum_r \ell_r(\ell_r-1)/2`
(and the same per group), a separable convex function of the loads, so the problem is a min-cost flow
(source -> row, capacity k; row -> bucket, capacity 1, cost :math:`-C_{ir}`; bucket -> sink with marginal cost
:math:`\lambda\ell_r`) and integral optima are exact optima (Jeong & Song, ICML 2018, arXiv:1805.05809; the group
level is the network G' of Jeong, Kim & Song, CVPR 2019, arXiv:1902.10990).

Public functions: :func:`sparse_codes`, :func:`energy`, :func:`balanced_labels`.
"""

import numpy as np

__all__ = ["BACKENDS", "LABEL_BACKENDS", "sparse_codes", "energy", "balanced_labels"]

BACKENDS = ("numba", "ortools", "networkx")
LABEL_BACKENDS = (*BACKENDS, "scipy")
# warm start of the numba solver without groups: rounds of bucket-price adjustment and the first step in units of
# the mean gap between a row's k-th and (k+1)-th value times d / (n k). Tuned on uniform and normal scores; they only
# change the speed, never the optimum.
_PRICE_ROUNDS = 8
_PRICE_STEP = 4.0


def _finite_float(name, value, *, nonneg=True):
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be a real number; got {value!r}") from None
    if not np.isfinite(x) or (nonneg and x < 0):
        raise ValueError(f"`{name}` must be finite and >= 0; got {value!r}")
    return x


def _scores_iv(scores, name="scores"):
    s = np.asarray(scores)
    if s.ndim != 2:
        raise ValueError(f"`{name}` must be a 2-D (n, d) array; got shape {s.shape}")
    if s.shape[0] == 0 or s.shape[1] == 0:
        raise ValueError(f"`{name}` must be non-empty; got shape {s.shape}")
    if not (np.issubdtype(s.dtype, np.floating) or np.issubdtype(s.dtype, np.integer) or s.dtype == bool):
        raise ValueError(f"`{name}` must hold real numbers; got dtype {s.dtype}")
    s = np.ascontiguousarray(s, dtype=np.float64)
    if not np.isfinite(s).all():
        raise ValueError(f"`{name}` must be finite; got {int((~np.isfinite(s)).sum())} NaN or inf entries")
    return s


def _groups_iv(groups, n, lam_group):
    """(gid int64 in 0..G-1, G) or (None, 0). Group labels may be any integers; they are renumbered in sorted order."""
    if groups is None:
        return None, 0
    g = np.asarray(groups)
    if g.ndim != 1 or g.shape[0] != n:
        raise ValueError(f"`groups` must be a 1-D array of length n = {n} (one label per row); got shape {g.shape}")
    if not (np.issubdtype(g.dtype, np.integer) or g.dtype == bool):
        raise ValueError(f"`groups` must hold integer labels; got dtype {g.dtype}")
    _, gid = np.unique(g, return_inverse=True)
    gid = np.ascontiguousarray(gid.reshape(-1), dtype=np.int64)
    return gid, int(gid.max()) + 1


def _sparse_codes_iv(scores, k, lam, groups, lam_group, backend):
    s = _scores_iv(scores)
    n, d = s.shape
    if isinstance(k, bool) or not isinstance(k, int | np.integer):
        raise ValueError(f"`k` must be an integer; got {k!r}")
    if not 1 <= k <= d:
        raise ValueError(f"`k` must satisfy 1 <= k <= d = {d} (k distinct buckets per row); got {k}")
    lam = _finite_float("lam", lam)
    lam_group = _finite_float("lam_group", lam_group)
    if groups is None and lam_group != 0.0:
        raise ValueError(f"`lam_group` = {lam_group} needs `groups`; pass one group label per row")
    gid, n_groups = _groups_iv(groups, n, lam_group)
    if backend not in BACKENDS:
        raise ValueError(f"`backend` must be one of {BACKENDS}; got {backend!r}")
    return s, int(k), lam, gid, n_groups, lam_group


def sparse_codes(scores, k, lam, groups=None, lam_group=0.0, backend="numba"):
    r"""Exact k-hot codes: each row takes k distinct buckets, maximising scores minus convex collision penalties.

    Solves

    .. math::

        \max_{z\in\{0,1\}^{n\times d},\ z\mathbf 1 = k}\;
        \sum_{i,r} C_{ir} z_{ir} - \lambda \sum_r \frac{\ell_r(\ell_r-1)}{2}
        - \lambda_g \sum_{g,r} \frac{\ell_{gr}(\ell_{gr}-1)}{2},

    with :math:`\ell_r = \sum_i z_{ir}` and :math:`\ell_{gr} = \sum_{i\in g} z_{ir}`: the number of row pairs that
    share bucket r (overall, and inside group g) is penalised by ``lam`` (and ``lam_group``).

    Parameters
    ----------
    scores : array_like, shape (n, d)
        Real, finite scores C (hash-head activations, per-class means, or minus a cost). n, d >= 1.
    k : int
        Ones per row, ``1 <= k <= d``.
    lam : float
        Penalty per unordered row pair sharing a bucket, >= 0 (the original implementation's convention).
    groups : array_like of int, shape (n,), optional
        Group label per row (e.g. the parent path of a compound-code level). Any integers.
    lam_group : float
        Extra penalty per pair of same-group rows sharing a bucket, >= 0. Needs ``groups``.
    backend : {"numba", "ortools", "networkx"}
        ``"numba"``: the structured solver below (exact for float scores). ``"ortools"``: OR-Tools
        ``SimpleMinCostFlow`` on the spec's network with parallel unit arcs, costs scaled to int64 by
        ``2**40 / max|cost|``. ``"networkx"``: ``network_simplex`` on the same network. The last two are the
        references of the tests and benchmarks and need the ``ref`` extra (networkx is a core dependency).

    Returns
    -------
    codes : ndarray of bool, shape (n, d)
        Exactly k True per row.

    Raises
    ------
    ValueError
        Non-2-D, empty or non-finite ``scores``; ``k`` outside ``[1, d]``; negative or non-finite ``lam`` /
        ``lam_group``; ``groups`` of the wrong length or dtype; ``lam_group`` without ``groups``; unknown backend.

    Notes
    -----
    Algorithm (``"numba"``): successive shortest paths on the implicit residual network rows -> (group-bucket) ->
    bucket -> sink. The convex penalties are not expanded into parallel arcs: the next unit through bucket r costs
    ``lam * load[r]`` and the last one can be returned for ``-lam * (load[r] - 1)``. No arc list is built, no scores
    are rounded: the optimum is exact for float scores up to float round-off in the potentials (negative reduced
    costs from round-off are clamped to 0).

    * Without groups (or ``lam_group = 0``): a warm start, then repair. Bucket prices y take a few damped steps
      against the load imbalance (8 passes over the scores); every row then takes its top-k of ``scores - y`` and
      each bucket sends to the sink the number of units its price justifies (``lam (f - 1) <= y <= lam f``, as
      close to its load as allowed). Every residual arc has reduced cost >= 0 with these prices as potentials,
      whatever the prices are; the buckets (and the sink) whose load and sink flow differ are excesses and
      deficits. Repair: Dijkstra from one excess node (the sink first, else the smallest bucket index) to the
      nearest deficit node, one unit along the path, potentials of the settled nodes moved; Dijkstra scans
      arrays (a settled row passes over its d buckets), no heap.
    * With groups: rows are inserted in index order, one unit at a time, along a shortest augmenting path from
      the row to the sink (heap Dijkstra with node potentials, stopped as soon as the sink is settled; only
      settled nodes have their potentials moved).

    Complexity: without groups, warm start O(n d k) (k small: O(n d) per pass), then one Dijkstra per unit of
    imbalance left (typically a few percent of the n k units on random scores, more with many exactly tied
    scores), each O((n + d)^2) at worst with array scans; a Dijkstra settles only the rows and buckets closer than
    its target. With groups, n k Dijkstras, each O(n d + N log N) at worst with N = n + (G + 1) d + 1 nodes.
    Memory O(n d).

    Ties: deterministic; equal inputs give equal codes. Without groups: the warm start breaks equal values of a
    row by the smaller bucket index, and Dijkstra settles, among equal tentative distances, the sink first, then
    the smaller row index, then the smaller bucket index, and stops at the first deficit bucket (in bucket index
    order) that a settled row reaches at the row's own distance. With groups: among equal distances Dijkstra settles the
    smaller node index first (rows before group-bucket nodes before buckets, lower index first). With
    ``lam = 0`` and distinct scores the codes are the per-row top-k.

    References
    ----------
    Y. Jeong, H. O. Song, "Efficient end-to-end learning for quantizable representations", ICML 2018,
    arXiv:1805.05809. Y. Jeong, Y. Kim, H. O. Song, "End-to-end efficient representation learning via cascading
    combinatorial optimization", CVPR 2019, arXiv:1902.10990.

    Examples
    --------
    >>> import numpy as np
    >>> from combax.solvers import assign
    >>> s = np.array([[3.0, 2.0, 0.0], [3.0, 2.5, 0.0]])
    >>> assign.sparse_codes(s, 1, lam=0.0).astype(int)
    array([[1, 0, 0],
           [1, 0, 0]])
    >>> assign.sparse_codes(s, 1, lam=1.0).astype(int)
    array([[1, 0, 0],
           [0, 1, 0]])
    """
    s, k, lam, gid, n_groups, lam_group = _sparse_codes_iv(scores, k, lam, groups, lam_group, backend)
    has_groups = gid is not None and lam_group > 0.0
    if backend == "numba":
        from ._assign_kernels import _codes_price_ssp_kernel, _codes_ssp_kernel

        if has_groups:
            z, status = _codes_ssp_kernel(s, k, lam, gid, n_groups, lam_group, True)
        else:
            z, status = _codes_price_ssp_kernel(s, k, lam, _PRICE_ROUNDS, _PRICE_STEP)
        if status != 0:  # unreachable after validation (k <= d makes every instance feasible)
            raise RuntimeError("no augmenting path found; please report this instance")
        return z.view(bool)
    from . import _assign_reference as ref

    solve = ref.codes_ortools if backend == "ortools" else ref.codes_networkx
    if has_groups:
        return solve(s, k, lam, gid, n_groups, lam_group)
    return solve(s, k, lam, None, 0, 0.0)


def energy(scores, codes, lam, groups=None, lam_group=0.0):
    r"""The minimised energy of a code matrix (the objective of :func:`sparse_codes` with its sign flipped).

    .. math::

        E(z) = -\sum_{i,r} C_{ir} z_{ir} + \lambda \sum_r \frac{\ell_r(\ell_r-1)}{2}
               + \lambda_g \sum_{g,r} \frac{\ell_{gr}(\ell_{gr}-1)}{2}

    Parameters
    ----------
    scores : array_like, shape (n, d)
    codes : array_like of bool or 0/1, shape (n, d)
        Any code matrix (the row sums are not checked).
    lam, groups, lam_group
        As in :func:`sparse_codes`.

    Returns
    -------
    float
        E(z). O(n d).
    """
    s = _scores_iv(scores)
    z = np.asarray(codes)
    if z.shape != s.shape:
        raise ValueError(f"`codes` must have the shape of `scores` {s.shape}; got {z.shape}")
    if z.dtype != bool:
        if not np.isin(z, (0, 1)).all():
            raise ValueError("`codes` must be boolean or hold only 0 and 1")
        z = z.astype(bool)
    lam = _finite_float("lam", lam)
    lam_group = _finite_float("lam_group", lam_group)
    gid, n_groups = _groups_iv(groups, s.shape[0], lam_group)
    if groups is None and lam_group != 0.0:
        raise ValueError(f"`lam_group` = {lam_group} needs `groups`; pass one group label per row")
    load = z.sum(axis=0).astype(np.float64)
    e = -float(s[z].sum()) + lam * float((load * (load - 1.0)).sum()) / 2.0
    if gid is not None and lam_group != 0.0:
        gload = np.zeros((n_groups, s.shape[1]))
        np.add.at(gload, gid, z)
        e += lam_group * float((gload * (gload - 1.0)).sum()) / 2.0
    return e


def balanced_labels(cost, lam, backend="numba"):
    r"""CascadeVAE's discrete step: one category per sample, minimising cost plus a same-category pair penalty.

    .. math::

        \min_{l\in\{0..S-1\}^n}\; \sum_i u_{i,l_i} + \lambda \sum_c \frac{n_c(n_c-1)}{2},
        \qquad n_c = |\{i : l_i = c\}|,

    which is :func:`sparse_codes` with k = 1 and scores = -cost (``specs/cascade_vae.md`` §2; Jeong & Song,
    "Learning discrete and continuous factors of data via alternating disentanglement", ICML 2019,
    arXiv:1905.09432).

    Parameters
    ----------
    cost : array_like, shape (n, S)
        Finite unary costs u (e.g. the reconstruction loss of sample i under category c).
    lam : float
        Penalty per pair of samples in the same category, >= 0.
    backend : {"numba", "ortools", "networkx", "scipy"}
        The first three as in :func:`sparse_codes`. ``"scipy"``: ``linear_sum_assignment`` on the slot-expanded
        (n, n S) matrix whose slot q of category c costs ``u[:, c] + q lam`` (a reference; O((n S)^3)-ish).

    Returns
    -------
    labels : ndarray of int64, shape (n,)

    Notes
    -----
    Ties follow the rule of the chosen backend; for ``"numba"`` see :func:`sparse_codes`.
    Complexity (numba): the price warm start of :func:`sparse_codes`, O(n S), then one Dijkstra over n + S + 1 nodes
    per unit of imbalance left, O(n (n S + (n + S) log(n + S))) in the worst case.

    Examples
    --------
    >>> import numpy as np
    >>> from combax.solvers import assign
    >>> u = np.array([[0.0, 1.0], [0.0, 3.0], [0.0, 2.0]])
    >>> assign.balanced_labels(u, lam=0.0).tolist(), assign.balanced_labels(u, lam=2.0).tolist()
    ([0, 0, 0], [1, 0, 0])
    """
    if backend not in LABEL_BACKENDS:
        raise ValueError(f"`backend` must be one of {LABEL_BACKENDS}; got {backend!r}")
    u = _scores_iv(cost, name="cost")
    lam = _finite_float("lam", lam)
    if backend == "scipy":
        from ._assign_reference import labels_scipy

        return labels_scipy(u, lam)
    codes = sparse_codes(-u, 1, lam, backend=backend)
    return np.argmax(codes, axis=1).astype(np.int64)
