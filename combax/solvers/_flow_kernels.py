"""numba kernels of :mod:`combax.solvers.flow`: primal network simplex and a negative-cycle test.

No validation happens here; :func:`combax.solvers.flow.min_cost_flow` has done it. Kernels never raise or print.

Network simplex with strongly feasible spanning trees (Ahuja, Magnanti & Orlin 1993, ch. 11):

* nodes ``0 .. n-1`` and an artificial root ``n``; one artificial arc per node (``i -> root`` when
  ``supply[i] >= 0``, else ``root -> i``) carries the initial flow ``|supply[i]|``;
* costs are lexicographic pairs ``(M, C)``: artificial arcs cost ``(1, 0)``, real arcs ``(0, cost)``. Phase 1 prices
  only the integer ``M`` part (it minimises the artificial flow exactly); phase 2 prices real arcs whose ``M``
  reduced cost is 0 by their float ``C`` reduced cost. This is big-M without a numeric M, so float costs are never
  mixed with a huge constant and stay exact;
* tree storage: parent, parent arc, depth and doubly linked child lists; a pivot re-hangs the cut-off subtree and
  recomputes its depths and potentials from the parents (no potential drift);
* pricing: block search (blocks of ``ceil(sqrt(#arcs))`` arcs, cyclic, the most violating arc of the first block that
  has one); leaving arc: the last blocking arc met when walking the pivot cycle along its orientation from the apex
  (Cunningham's rule, which keeps the tree strongly feasible and prevents cycling).

Reduced costs here are ``c + pi[tail] - pi[head]`` (tree arcs 0); the wrapper converts to the AMO sign.
"""

import numpy as np
from numba import njit

_BIG = np.int64(1) << np.int64(62)


# mutates: first_child, next_sib, prev_sib
@njit(cache=True, inline="always")
def _detach(x, p, first_child, next_sib, prev_sib):
    a = prev_sib[x]
    b = next_sib[x]
    if a != -1:
        next_sib[a] = b
    else:
        first_child[p] = b
    if b != -1:
        prev_sib[b] = a
    prev_sib[x] = -1
    next_sib[x] = -1


# mutates: first_child, next_sib, prev_sib
@njit(cache=True, inline="always")
def _attach(x, p, first_child, next_sib, prev_sib):
    f = first_child[p]
    next_sib[x] = f
    prev_sib[x] = -1
    if f != -1:
        prev_sib[f] = x
    first_child[p] = x


# returns: (flow int64 (m,), piC float64 (n+1,), piM int64 (n+1,), state int8 (m,), status, pivots)
# status 0 = optimal, 1 = infeasible (artificial flow left after phase 1)
@njit(cache=True)
def _network_simplex_kernel(n, tails, heads, cap, cost, supply, eps):
    m = tails.shape[0]
    root = n
    nn = n + 1
    ma = m + n
    T = np.empty(ma, np.int64)
    H = np.empty(ma, np.int64)
    U = np.empty(ma, np.int64)
    F = np.zeros(ma, np.int64)
    C = np.zeros(ma)
    CM = np.zeros(ma, np.int64)
    state = np.ones(ma, np.int8)  # +1 at lower bound, -1 at upper bound, 0 in the tree
    for a in range(m):
        T[a] = tails[a]
        H[a] = heads[a]
        U[a] = cap[a]
        C[a] = cost[a]
    parent = np.full(nn, -1, np.int64)
    pred = np.full(nn, -1, np.int64)
    depth = np.zeros(nn, np.int64)
    piC = np.zeros(nn)
    piM = np.zeros(nn, np.int64)
    first_child = np.full(nn, -1, np.int64)
    next_sib = np.full(nn, -1, np.int64)
    prev_sib = np.full(nn, -1, np.int64)
    for i in range(n):
        a = m + i
        if supply[i] >= 0:  # zero-supply nodes point at the root: strongly feasible start
            T[a] = i
            H[a] = root
            F[a] = supply[i]
            piM[i] = -1
        else:
            T[a] = root
            H[a] = i
            F[a] = -supply[i]
            piM[i] = 1
        U[a] = _BIG
        CM[a] = 1
        state[a] = 0
        parent[i] = root
        pred[i] = a
        depth[i] = 1
        _attach(i, root, first_child, next_sib, prev_sib)

    block = int(np.sqrt(ma)) + 1
    if block < 8:
        block = 8
    stack = np.empty(nn, np.int64)
    pos = 0
    phase = 1
    pivots = 0
    while True:
        # ---------------------------------------------------------------- pricing (block search)
        n_scan = ma if phase == 1 else m
        if pos >= n_scan:
            pos = 0
        best = -1
        best_m = 0
        best_c = -eps
        scanned = 0
        in_block = 0
        while scanned < n_scan:
            a = pos
            pos += 1
            if pos == n_scan:
                pos = 0
            scanned += 1
            s = state[a]
            if s != 0:
                t = T[a]
                h = H[a]
                rm = s * (CM[a] + piM[t] - piM[h])
                if phase == 1:
                    if rm < best_m:
                        best_m = rm
                        best = a
                elif rm == 0:
                    rc = s * (C[a] + piC[t] - piC[h])
                    if rc < best_c:
                        best_c = rc
                        best = a
            in_block += 1
            if in_block == block:
                if best >= 0:
                    break
                in_block = 0
        if best < 0:
            if phase == 1:
                for a in range(m, ma):
                    if F[a] != 0:
                        return F[:m].copy(), piC, piM, state[:m].copy(), 1, pivots
                phase = 2
                pos = 0
                continue
            break
        pivots += 1

        # ---------------------------------------------------------------- pivot cycle and leaving arc
        e = best
        s = state[e]
        if s == 1:
            first = T[e]
            second = H[e]
            de = U[e] - F[e]
        else:
            first = H[e]
            second = T[e]
            de = F[e]
        x = first
        y = second
        while x != y:
            if depth[x] > depth[y]:
                x = parent[x]
            elif depth[y] > depth[x]:
                y = parent[y]
            else:
                x = parent[x]
                y = parent[y]
        apex = x
        # first side: flow runs from the apex down to `first` (parent -> x); first minimum walking up = last in order
        d1 = _BIG
        w1 = -1
        x = first
        while x != apex:
            a = pred[x]
            r = F[a] if T[a] == x else U[a] - F[a]
            if r < d1:
                d1 = r
                w1 = x
            x = parent[x]
        # second side: flow runs from `second` up to the apex (x -> parent); last minimum = nearest the apex
        d2 = _BIG
        w2 = -1
        x = second
        while x != apex:
            a = pred[x]
            r = U[a] - F[a] if T[a] == x else F[a]
            if r <= d2:
                d2 = r
                w2 = x
            x = parent[x]
        delta = de
        choice = 0
        if d1 < delta:
            delta = d1
            choice = 1
        if w2 != -1 and d2 <= delta:
            delta = d2
            choice = 2

        # ---------------------------------------------------------------- augment
        if delta > 0:
            F[e] += s * delta
            x = first
            while x != apex:
                a = pred[x]
                if T[a] == x:
                    F[a] -= delta
                else:
                    F[a] += delta
                x = parent[x]
            x = second
            while x != apex:
                a = pred[x]
                if T[a] == x:
                    F[a] += delta
                else:
                    F[a] -= delta
                x = parent[x]
        if choice == 0:
            state[e] = -s
            continue

        # ---------------------------------------------------------------- tree update
        if choice == 1:
            w = w1
            q = first
            r_node = second
        else:
            w = w2
            q = second
            r_node = first
        leave = pred[w]
        state[leave] = 1 if F[leave] == 0 else -1
        state[e] = 0
        x = q
        newpar = r_node
        newarc = e
        while True:
            oldpar = parent[x]
            oldarc = pred[x]
            _detach(x, oldpar, first_child, next_sib, prev_sib)
            parent[x] = newpar
            pred[x] = newarc
            _attach(x, newpar, first_child, next_sib, prev_sib)
            if x == w:
                break
            newpar = x
            newarc = oldarc
            x = oldpar
        # depths and potentials of the re-hung subtree, from the parents
        stack[0] = q
        top = 1
        while top > 0:
            top -= 1
            x = stack[top]
            p = parent[x]
            a = pred[x]
            depth[x] = depth[p] + 1
            if T[a] == p:
                piC[x] = piC[p] + C[a]
                piM[x] = piM[p] + CM[a]
            else:
                piC[x] = piC[p] - C[a]
                piM[x] = piM[p] - CM[a]
            c = first_child[x]
            while c != -1:
                stack[top] = c
                top += 1
                c = next_sib[c]
    return F[:m].copy(), piC, piM, state[:m].copy(), 0, pivots


# returns: True when the arcs (all of infinite capacity) contain a cycle of cost < 0 (Bellman-Ford, all sources)
@njit(cache=True)
def _negative_cycle_kernel(n, tails, heads, cost, eps):
    dist = np.zeros(n)
    m = tails.shape[0]
    for _ in range(n + 1):
        changed = False
        for a in range(m):
            cand = dist[tails[a]] + cost[a]
            if cand < dist[heads[a]] - eps:
                dist[heads[a]] = cand
                changed = True
        if not changed:
            return False
    return True
