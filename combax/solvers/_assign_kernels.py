"""numba kernels of :mod:`combax.solvers.assign`: successive shortest paths on the structured code network.

No validation happens here; :func:`combax.solvers.assign.sparse_codes` has done it. Kernels never raise or print.

Node numbering of the implicit residual network (nothing is materialised as an arc list):

* rows ``0 .. n-1``;
* group-bucket nodes ``n + g*d + r`` (only when the kernel runs with groups);
* bucket nodes ``B0 + r`` with ``B0 = n`` (no groups) or ``n + G*d`` (groups);
* the sink ``T = B0 + d``.
"""

import numpy as np
from numba import njit

_INF = np.inf


@njit(cache=True, inline="always")
def _before(dist, a, b):
    """Heap order: smaller distance first, equal distances by smaller node index (the documented tie rule)."""
    da = dist[a]
    db = dist[b]
    return da < db or (da == db and a < b)


# mutates: heap, hpos
@njit(cache=True)
def _sift_up(heap, hpos, dist, i):
    node = heap[i]
    while i > 0:
        p = (i - 1) >> 1
        q = heap[p]
        if _before(dist, node, q):
            heap[i] = q
            hpos[q] = i
            i = p
        else:
            break
    heap[i] = node
    hpos[node] = i


# mutates: heap, hpos
@njit(cache=True)
def _sift_down(heap, hpos, dist, size, i):
    node = heap[i]
    while True:
        c = 2 * i + 1
        if c >= size:
            break
        if c + 1 < size and _before(dist, heap[c + 1], heap[c]):
            c += 1
        if _before(dist, heap[c], node):
            heap[i] = heap[c]
            hpos[heap[c]] = i
            i = c
        else:
            break
    heap[i] = node
    hpos[node] = i


# mutates: dist, pred, heap, hpos, touched (returns 1 when v entered the heap for the first time)
@njit(cache=True, inline="always")
def _relax(v, cand, u, dist, pred, heap, hpos, size, touched, ntouch):
    if cand < dist[v]:
        first = dist[v] == _INF
        dist[v] = cand
        pred[v] = u
        if first:
            touched[ntouch] = v
            heap[size] = v
            hpos[v] = size
            _sift_up(heap, hpos, dist, size)
            return 1
        _sift_up(heap, hpos, dist, hpos[v])
    return 0


# returns: z (n, d) uint8 codes and an int status (0 = optimal, 1 = no augmenting path, which needs k > d)
@njit(cache=True)
def _codes_ssp_kernel(scores, k, lam, gid, n_groups, lam_group, has_groups):
    n, d = scores.shape
    n_g = n_groups if has_groups else 1
    b0 = n + (n_groups * d if has_groups else 0)
    t_node = b0 + d
    n_nodes = t_node + 1

    z = np.zeros((n, d), np.uint8)
    load = np.zeros(d, np.int64)
    gload = np.zeros((n_g, d), np.int64)
    # per bucket, who holds residual flow into it: rows (no groups) or groups (groups), with swap-remove positions
    n_mem = n_groups if has_groups else n
    mem = np.empty((d, n_mem), np.int64)
    cnt = np.zeros(d, np.int64)
    pos = np.empty((n_mem, d), np.int64)
    # rows of each group (CSR)
    gstart = np.zeros(n_g + 1, np.int64)
    gmem = np.empty(n, np.int64)
    if has_groups:
        for i in range(n):
            gstart[gid[i] + 1] += 1
        for g in range(n_g):
            gstart[g + 1] += gstart[g]
        fill = gstart[:-1].copy()
        for i in range(n):
            gmem[fill[gid[i]]] = i
            fill[gid[i]] += 1

    # potentials with every reduced cost >= 0 on the empty flow: rows at their best score, the rest at 0
    pot = np.zeros(n_nodes)
    for i in range(n):
        best = scores[i, 0]
        for c in range(1, d):
            if scores[i, c] > best:
                best = scores[i, c]
        pot[i] = best

    dist = np.full(n_nodes, _INF)
    pred = np.full(n_nodes, -1, np.int64)
    hpos = np.full(n_nodes, -1, np.int64)
    heap = np.empty(n_nodes, np.int64)
    settled = np.empty(n_nodes, np.int64)
    touched = np.empty(n_nodes, np.int64)
    done = np.zeros(n_nodes, np.uint8)

    for i in range(n):
        for _unit in range(k):
            # Dijkstra on reduced costs from row i, stopped when the sink is settled
            dist[i] = 0.0
            heap[0] = i
            hpos[i] = 0
            touched[0] = i
            size = 1
            ntouch = 1
            nset = 0
            dsink = _INF
            while size > 0:
                u = heap[0]
                size -= 1
                if size > 0:
                    heap[0] = heap[size]
                    _sift_down(heap, hpos, dist, size, 0)
                hpos[u] = -1
                du = dist[u]
                if u == t_node:
                    dsink = du
                    break
                done[u] = 1
                settled[nset] = u
                nset += 1
                pu = pot[u] + du
                if u < n:
                    # row -> (group-)bucket arcs of the buckets the row does not hold: cost -score
                    base = n + gid[u] * d if has_groups else b0
                    for c in range(d):
                        if z[u, c] == 0:
                            v = base + c
                            if done[v] == 0:
                                cand = pu - scores[u, c] - pot[v]
                                if cand < du:  # float round-off only: reduced costs are >= 0
                                    cand = du
                                pushed = _relax(v, cand, u, dist, pred, heap, hpos, size, touched, ntouch)
                                size += pushed
                                ntouch += pushed
                elif u < b0:
                    g = (u - n) // d
                    b = (u - n) - g * d
                    v = b0 + b  # next parallel copy of the group arc: marginal cost lam_group * load
                    if done[v] == 0:
                        cand = pu + lam_group * gload[g, b] - pot[v]
                        if cand < du:
                            cand = du
                        pushed = _relax(v, cand, u, dist, pred, heap, hpos, size, touched, ntouch)
                        size += pushed
                        ntouch += pushed
                    for q in range(gstart[g], gstart[g + 1]):
                        v = gmem[q]  # reverse of row -> group-bucket: give the bucket back, cost +score
                        if z[v, b] == 1 and done[v] == 0:
                            cand = pu + scores[v, b] - pot[v]
                            if cand < du:
                                cand = du
                            pushed = _relax(v, cand, u, dist, pred, heap, hpos, size, touched, ntouch)
                            size += pushed
                            ntouch += pushed
                else:
                    b = u - b0
                    v = t_node  # next parallel copy of the sink arc: marginal cost lam * load
                    cand = pu + lam * load[b] - pot[v]
                    if cand < du:
                        cand = du
                    pushed = _relax(v, cand, u, dist, pred, heap, hpos, size, touched, ntouch)
                    size += pushed
                    ntouch += pushed
                    for q in range(cnt[b]):
                        x = mem[b, q]
                        if has_groups:
                            v = n + x * d + b  # reverse of the last used group copy
                            cost = -lam_group * (gload[x, b] - 1)
                        else:
                            v = x  # reverse of row -> bucket
                            cost = scores[x, b]
                        if done[v] == 0:
                            cand = pu + cost - pot[v]
                            if cand < du:
                                cand = du
                            pushed = _relax(v, cand, u, dist, pred, heap, hpos, size, touched, ntouch)
                            size += pushed
                            ntouch += pushed
            if dsink == _INF:
                return z, 1
            # potentials: settled nodes move by dist - dist(sink); keeps every reduced cost >= 0
            for q in range(nset):
                v = settled[q]
                pot[v] += dist[v] - dsink
            # augment one unit along the predecessor path
            v = t_node
            while v != i:
                u = pred[v]
                if u < n:
                    c = (v - n) % d if has_groups else v - b0
                    z[u, c] = 1
                    if not has_groups:
                        mem[c, cnt[c]] = u
                        pos[u, c] = cnt[c]
                        cnt[c] += 1
                elif u < b0:
                    g = (u - n) // d
                    b = (u - n) - g * d
                    if v < n:
                        z[v, b] = 0
                    else:
                        gload[g, b] += 1
                        if gload[g, b] == 1:
                            mem[b, cnt[b]] = g
                            pos[g, b] = cnt[b]
                            cnt[b] += 1
                else:
                    b = u - b0
                    if v == t_node:
                        load[b] += 1
                    else:
                        if has_groups:
                            x = (v - n) // d
                            gload[x, b] -= 1
                            remove = gload[x, b] == 0
                        else:
                            x = v
                            z[x, b] = 0
                            remove = True
                        if remove:
                            p = pos[x, b]
                            last = mem[b, cnt[b] - 1]
                            mem[b, p] = last
                            pos[last, b] = p
                            cnt[b] -= 1
                v = u
            for q in range(ntouch):
                v = touched[q]
                dist[v] = _INF
                hpos[v] = -1
                done[v] = 0
                pred[v] = -1
    return z, 0
