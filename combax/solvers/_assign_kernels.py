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
@njit(cache=True, inline="always")
def _add_member(mem, pos, cnt, x, b):
    # appends row x to bucket b's member list mem[b, :cnt[b]] and records its slot in pos[x, b]
    mem[b, cnt[b]] = x
    pos[x, b] = cnt[b]
    cnt[b] += 1


@njit(cache=True, inline="always")
def _drop_member(mem, pos, cnt, x, b):
    # removes row x from bucket b's member list mem[b, :cnt[b]] (pos[x, b] = its slot) by moving the last member in
    mp = pos[x, b]
    last = mem[b, cnt[b] - 1]
    mem[b, mp] = last
    pos[last, b] = mp
    cnt[b] -= 1


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
                        _add_member(mem, pos, cnt, u, c)
                elif u < b0:
                    g = (u - n) // d
                    b = (u - n) - g * d
                    if v < n:
                        z[v, b] = 0
                    else:
                        gload[g, b] += 1
                        if gload[g, b] == 1:
                            _add_member(mem, pos, cnt, g, b)
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
                            _drop_member(mem, pos, cnt, x, b)
                v = u
            for q in range(ntouch):
                v = touched[q]
                dist[v] = _INF
                hpos[v] = -1
                done[v] = 0
                pred[v] = -1
    return z, 0


# mutates: buf, vbuf (on return: the top kk = min(k + 1, d) buckets of row i of scores - y, best first, ties by
# smaller bucket index, and their values)
@njit(cache=True, inline="always")
def _row_topk(scores, i, y, kk, buf, vbuf):
    d = scores.shape[1]
    row = scores[i]
    for c in range(kk):
        v = row[c] - y[c]
        j = c
        while j > 0 and vbuf[j - 1] < v:  # a later bucket passes an earlier one only if strictly better
            buf[j] = buf[j - 1]
            vbuf[j] = vbuf[j - 1]
            j -= 1
        buf[j] = c
        vbuf[j] = v
    thr = vbuf[kk - 1]
    for c in range(kk, d):
        v = row[c] - y[c]
        if v > thr:
            j = kk - 1
            while j > 0 and vbuf[j - 1] < v:
                buf[j] = buf[j - 1]
                vbuf[j] = vbuf[j - 1]
                j -= 1
            buf[j] = c
            vbuf[j] = v
            thr = vbuf[kk - 1]


# mutates: cnt, buf, vbuf (bucket loads when every row takes its top-k of scores - y)
# returns: the mean gap between the k-th and (k+1)-th value of a row (0 when k = d)
@njit(cache=True)
def _topk_counts_kernel(scores, k, y, cnt, buf, vbuf):
    n, d = scores.shape
    kk = k + 1 if k < d else k
    gap = 0.0
    for c in range(d):
        cnt[c] = 0
    for i in range(n):
        _row_topk(scores, i, y, kk, buf, vbuf)
        for j in range(k):
            cnt[buf[j]] += 1
        if kk > k:
            gap += vbuf[k - 1] - vbuf[k]
    return gap / n


# mutates: z, mem, cnt, pos, prow, buf, vbuf (rows take their top-k of scores - y; prow = the k-th value)
@njit(cache=True)
def _topk_rows_kernel(scores, k, y, z, mem, cnt, pos, prow, buf, vbuf):
    n, d = scores.shape
    kk = k + 1 if k < d else k
    for c in range(d):
        cnt[c] = 0
    for i in range(n):
        _row_topk(scores, i, y, kk, buf, vbuf)
        zi = z[i]
        for c in range(d):
            zi[c] = 0
        for j in range(k):
            c = buf[j]
            zi[c] = 1
            _add_member(mem, pos, cnt, i, c)
        prow[i] = vbuf[k - 1]


# returns: z (n, d) uint8 codes and an int status (0 = optimal, 1 = stuck, which needs k > d)
@njit(cache=True)
def _codes_price_ssp_kernel(scores, k, lam, rounds, alpha):
    """No groups: a price warm start, then successive shortest paths between excess and deficit nodes.

    Warm start. Bucket prices y (y = -potential of the bucket, the sink at potential 0) start at
    ``lam * (n k / d - 1/2)`` and take ``rounds`` damped steps against the imbalance of the loads (first step
    ``alpha`` times the mean gap between a row's k-th and (k+1)-th value, scaled by d / (n k) and capped by lam,
    then x0.8 per round). Then every row takes its top-k of ``scores - y`` (ties: smaller bucket index), with its
    potential at its k-th value, and bucket c sends f_c units to the sink, f_c the value in
    ``[lo, hi] = {f : lam (f - 1) <= y_c <= lam f}`` closest to its load. Every residual arc then has reduced cost
    >= 0 (rows hold a top set; the sink arcs of c are priced by y_c), whatever the prices: they only decide how much
    is left to repair. Imbalances: bucket c has ``load - f_c``, the sink ``sum f - n k``.

    Repair. While some node has excess: Dijkstra on reduced costs from the sink if it has excess, else from the
    smallest bucket with excess, stopped at the first settled node with a deficit; potentials of settled nodes
    move by dist - dist(target); one unit is sent back along the path (a row on it swaps one bucket for another,
    a sink arc adds or gives back one copy). Node scans are array passes, no heap: a settled row passes over its
    d buckets (also finding the nearest unsettled bucket), a settled bucket over its holders and its sink arc, the
    settled sink over the buckets' last copies; after a bucket or the sink is settled the buckets are rescanned
    only when no row or sink is at the settled distance. Equal tentative distances: the sink first, then the
    smallest row index, then the smallest bucket index; a deficit bucket reached by a row at that row's own
    distance (the current minimum, so final) ends the search at once, the first one in the row's pass.
    """
    n, d = scores.shape
    z = np.zeros((n, d), np.uint8)
    mem = np.empty((d, n), np.int64)
    cnt = np.zeros(d, np.int64)
    pos = np.empty((n, d), np.int64)
    prow = np.empty(n)
    buf = np.empty(k + 1, np.int64)
    vbuf = np.empty(k + 1)
    y = np.zeros(d)
    f = np.zeros(d, np.int64)
    if lam > 0.0 and lam * (n * k + rounds * n + 1.0) < 1e300:  # (absurd lam: no warm start, y = 0)
        avg = n * k / d
        for c in range(d):
            y[c] = lam * (avg - 0.5) if avg > 0.5 else 0.0
        step = 0.0
        for _r in range(rounds):
            gap = _topk_counts_kernel(scores, k, y, cnt, buf, vbuf)
            if _r == 0:
                if gap == 0.0:  # tied k-th and (k+1)-th values everywhere: fall back to the spread of the scores
                    lo_s = scores[0, 0]
                    hi_s = scores[0, 0]
                    for i in range(n):
                        for c in range(d):
                            if scores[i, c] < lo_s:
                                lo_s = scores[i, c]
                            if scores[i, c] > hi_s:
                                hi_s = scores[i, c]
                    gap = (hi_s - lo_s) / d
                # a price move changes the rows' choices at the scale of the gap and the sink flow at the scale of
                # lam: combine the two rates
                step = alpha * gap * d / (n * k)
                step = step * lam / (step + lam) if step > 0.0 else 0.0
            else:
                step *= 0.8
            for c in range(d):
                q = y[c] / lam
                lo = np.int64(np.ceil(q)) if q > 0.0 else 0
                hi = np.int64(np.floor(q)) + 1 if q >= 0.0 else 0
                v = cnt[c]
                if v < lo:
                    v = lo
                if v > hi:
                    v = hi
                y[c] += step * (cnt[c] - v)
    _topk_rows_kernel(scores, k, y, z, mem, cnt, pos, prow, buf, vbuf)
    sumf = 0
    for c in range(d):
        if lam == 0.0:
            f[c] = cnt[c]  # y = 0: any number of free copies
        elif y[c] < 0.0:
            f[c] = 0
        else:
            # f in [lo, hi] keeps both sink arcs of c at reduced cost >= 0: lam (f - 1) <= y <= lam f (in floats)
            q = y[c] / lam
            lo = np.int64(np.ceil(q))
            hi = np.int64(np.floor(q)) + 1
            while lo > 0 and lam * (lo - 1) >= y[c]:
                lo -= 1
            while lam * lo < y[c]:
                lo += 1
            while lam * hi <= y[c]:
                hi += 1
            while hi > 0 and lam * (hi - 1) > y[c]:
                hi -= 1
            v = cnt[c]
            if v < lo:
                v = lo
            if v > hi:
                v = hi
            f[c] = v
        sumf += f[c]
    pb = np.empty(d)
    for c in range(d):
        pb[c] = -y[c]
    pt = 0.0
    nk = n * k
    drow = np.full(n, _INF)
    db = np.full(d, _INF)
    predr = np.full(n, -1, np.int64)
    predb = np.full(d, -1, np.int64)
    doner = np.zeros(n, np.uint8)
    doneb = np.zeros(d, np.uint8)
    rlist = np.empty(n, np.int64)
    setb = np.empty(d, np.int64)
    while True:
        # one source with excess (bucket: held - sent to the sink; sink: received - n k): the sink first, else
        # the smallest such bucket; Dijkstra stops at the first settled node with a deficit
        nsrc = 0
        dT = _INF
        predT = -1
        if sumf > nk:
            dT = 0.0
            nsrc += 1
        else:
            for c in range(d):
                if cnt[c] > f[c]:
                    db[c] = 0.0
                    predb[c] = -1
                    nsrc += 1
                    break
        if nsrc == 0:
            break
        doneT = False
        nr = 0
        nsb = 0
        bvalid = False
        blb = 0.0  # while not bvalid: a lower bound of the unsettled buckets' tentative distances
        bmin = _INF
        bidx = -1
        target = -1  # 0..d-1 bucket, d = sink
        dtarget = _INF
        while True:
            rmin = _INF
            ridx = -1
            for q in range(nr):
                x = rlist[q]
                if doner[x] == 0:
                    v = drow[x]
                    if v < rmin or (v == rmin and x < ridx):
                        rmin = v
                        ridx = x
            tmin = _INF if doneT else dT
            if not bvalid and (tmin > blb and rmin > blb):
                # the nearest bucket may be the next node: rescan (otherwise the sink or a row at <= blb goes first)
                bmin = _INF
                bidx = -1
                for c in range(d):
                    if doneb[c] == 0 and db[c] < bmin:
                        bmin = db[c]
                        bidx = c
                bvalid = True
            if not bvalid:
                bmin = blb
            if tmin == _INF and rmin == _INF and bmin == _INF:
                return z, 1
            if tmin <= rmin and tmin <= bmin:
                doneT = True
                if sumf < nk:
                    target = d
                    dtarget = tmin
                    break
                # sink -> bucket: give back the last copy of every bucket that sends to the sink
                du = tmin
                pu = pt + du
                for c in range(d):
                    if doneb[c] == 0 and f[c] > 0:
                        cand = pu - lam * (f[c] - 1) - pb[c]
                        if cand < du:
                            cand = du
                        if cand < db[c]:
                            db[c] = cand
                            predb[c] = n
                bvalid = False
                blb = du
                continue
            if rmin <= bmin:
                x = ridx
                doner[x] = 1
                du = rmin
                pu = prow[x] + du
                bmin = _INF
                bidx = -1
                hit = -1
                for c in range(d):
                    if doneb[c] == 0:
                        v = db[c]
                        if z[x, c] == 0:
                            cand = pu - scores[x, c] - pb[c]
                            if cand < du:
                                cand = du
                            if cand < v:
                                v = cand
                                db[c] = cand
                                predb[c] = x
                                if cand == du and cnt[c] < f[c]:
                                    hit = c  # a deficit at the current (smallest) distance: final, stop here
                                    break
                        if v < bmin:
                            bmin = v
                            bidx = c
                if hit >= 0:
                    target = hit
                    dtarget = du
                    break
                bvalid = True
                continue
            c = bidx
            doneb[c] = 1
            setb[nsb] = c
            nsb += 1
            du = bmin
            if cnt[c] < f[c]:
                target = c
                dtarget = du
                break
            pu = pb[c] + du
            if not doneT:
                cand = pu + lam * f[c] - pt
                if cand < du:
                    cand = du
                if cand < dT:
                    dT = cand
                    predT = c
            for q in range(cnt[c]):
                x = mem[c, q]
                if doner[x] == 0:
                    cand = pu + scores[x, c] - prow[x]
                    if cand < du:
                        cand = du
                    if cand < drow[x]:
                        if drow[x] == _INF:
                            rlist[nr] = x
                            nr += 1
                        drow[x] = cand
                        predr[x] = c
            bvalid = False
            blb = du
        # potentials: settled nodes move by dist - dist(target)
        for q in range(nr):
            x = rlist[q]
            if doner[x] == 1:
                prow[x] += drow[x] - dtarget
        for q in range(nsb):
            c = setb[q]
            pb[c] += db[c] - dtarget
        if doneT:
            pt += dT - dtarget
        # augment one unit from the target back to a source
        node = target
        while True:
            if node == d:  # sink, reached from bucket predT (or a source)
                if predT == -1:
                    break
                c = predT
                f[c] += 1
                sumf += 1
                node = c
                continue
            c = node
            p = predb[c]
            if p == -1:
                break
            if p == n:  # sink -> c: the last copy of c is given back
                f[c] -= 1
                sumf -= 1
                node = d
                continue
            x = p
            z[x, c] = 1
            _add_member(mem, pos, cnt, x, c)
            c2 = predr[x]
            z[x, c2] = 0
            _drop_member(mem, pos, cnt, x, c2)
            node = c2
        for q in range(nr):
            x = rlist[q]
            drow[x] = _INF
            doner[x] = 0
        for c in range(d):
            db[c] = _INF
            doneb[c] = 0
    return z, 0
