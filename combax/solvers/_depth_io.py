"""File formats of the depth-compression solver: the original repository's CSV tables and our ``.npz``.

Formats
-------
Latency CSV (original repository, ``utils/table/time_*.csv``)
    Header ``id,st,end,time,stdev``; one row per allowed merged block ``(st, end]``; ``time`` in ms. Extra
    columns are ignored. Read with :func:`read_csv_table`.
Optimal-time CSV (``opt_time_*.csv``)
    The same plus a quoted ``breaks`` column: the positions ``st, c_1, ..., end`` of the fastest partition.
    Read with :func:`read_opt_time_csv`.
Importance CSV (combax)
    Header ``st,end,importance`` (plain, one activation flag) or ``st,end,x,y,importance`` (boundary flags ``x``
    at ``st`` and ``y`` at ``end``, each 0 or 1). Rows not listed are not allowed. Read with
    :func:`read_importance`, which also accepts ``.npy`` (the array itself) and ``.npz`` (key ``importance``).
Problem ``.npz`` (combax)
    Keys ``latency`` ((L+1, L+1) float, NaN = not allowed), ``importance`` ((L+1, L+1) or (L+1, L+1, 2, 2)),
    and optionally ``optional`` (1-D int array of positions). Written by :func:`save_npz`, read by
    :func:`load_npz`.
"""

import csv
from pathlib import Path

import numpy as np


def _rows(path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as fh:
        reader = csv.reader(fh)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise ValueError(f"`path` {str(path)!r} is empty; expected a CSV with a header row") from None
        rows = [r for r in reader if r]
    return header, rows


def _columns(path, header, names) -> list[int]:
    missing = [c for c in names if c not in header]
    if missing:
        raise ValueError(f"`path` {str(path)!r} must have columns {list(names)}; missing {missing} in header {header}")
    return [header.index(c) for c in names]


def read_csv_table(path, n_layers: int | None = None) -> np.ndarray:
    """Read a latency table in the original ``id,st,end,time,stdev`` CSV format.

    Parameters
    ----------
    path : str or Path
    n_layers : int, optional
        ``L``; by default the largest ``end`` in the file.

    Returns
    -------
    latency : (L+1, L+1) float64 array, ``latency[st, end] = time``, NaN where the file has no row.
    """
    header, rows = _rows(path)
    st_c, end_c, time_c = _columns(path, header, ("st", "end", "time"))
    st = np.array([int(r[st_c]) for r in rows], dtype=np.int64)
    end = np.array([int(r[end_c]) for r in rows], dtype=np.int64)
    val = np.array([float(r[time_c]) for r in rows], dtype=np.float64)
    return _scatter(path, st, end, val, n_layers)


def _scatter(path, st, end, val, n_layers):
    L = int(end.max()) if n_layers is None else int(n_layers)
    if st.size and (st.min() < 0 or end.max() > L or np.any(st >= end)):
        raise ValueError(f"`path` {str(path)!r}: every row needs 0 <= st < end <= L = {L}")
    table = np.full((L + 1, L + 1), np.nan)
    table[st, end] = val
    return table


def read_opt_time_csv(path, n_layers: int | None = None) -> tuple[np.ndarray, dict[tuple[int, int], tuple[int, ...]]]:
    """Read an ``opt_time_*.csv`` table: optimal times and the partition of each block.

    Returns
    -------
    time : (L+1, L+1) float64 array of the optimal times (NaN where absent).
    breaks : dict ``(st, end) -> (st, c_1, ..., end)``, the positions of the released partition.
    """
    header, rows = _rows(path)
    st_c, end_c, time_c, br_c = _columns(path, header, ("st", "end", "time", "breaks"))
    st = np.array([int(r[st_c]) for r in rows], dtype=np.int64)
    end = np.array([int(r[end_c]) for r in rows], dtype=np.int64)
    val = np.array([float(r[time_c]) for r in rows], dtype=np.float64)
    breaks = {(int(r[st_c]), int(r[end_c])): tuple(int(b) for b in r[br_c].split(",")) for r in rows}
    return _scatter(path, st, end, val, n_layers), breaks


def read_importance(path, n: int) -> np.ndarray:
    """Read an importance table for a chain with ``n = L + 1`` positions (``.npy``, ``.npz`` or CSV, see above)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return np.load(path)
    if suffix == ".npz":
        with np.load(path) as data:
            if "importance" not in data:
                raise ValueError(f"`path` {str(path)!r} must hold an array named 'importance'; got {sorted(data)}")
            return data["importance"]
    header, rows = _rows(path)
    flagged = "x" in header and "y" in header
    if flagged:
        st_c, end_c, x_c, y_c, v_c = _columns(path, header, ("st", "end", "x", "y", "importance"))
        table = np.full((n, n, 2, 2), np.nan)
    else:
        st_c, end_c, v_c = _columns(path, header, ("st", "end", "importance"))
        table = np.full((n, n), np.nan)
    for r in rows:
        i, j = int(r[st_c]), int(r[end_c])
        if not 0 <= i < j < n:
            raise ValueError(f"`path` {str(path)!r}: row {r} needs 0 <= st < end <= L = {n - 1}")
        if flagged:
            table[i, j, int(r[x_c]), int(r[y_c])] = float(r[v_c])
        else:
            table[i, j] = float(r[v_c])
    return table


def write_importance_csv(path, importance: np.ndarray) -> None:
    """Write an importance table in the combax CSV format (finite entries only)."""
    importance = np.asarray(importance, dtype=np.float64)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        if importance.ndim == 4:
            w.writerow(["st", "end", "x", "y", "importance"])
            for i, j, x, y in zip(*np.nonzero(np.isfinite(importance))):
                w.writerow([i, j, x, y, repr(float(importance[i, j, x, y]))])
        else:
            w.writerow(["st", "end", "importance"])
            for i, j in zip(*np.nonzero(np.isfinite(importance))):
                w.writerow([i, j, repr(float(importance[i, j]))])


def save_npz(path, latency, importance, optional=()) -> None:
    """Save a problem's tables to a combax ``.npz`` (keys ``latency``, ``importance``, ``optional``)."""
    np.savez(
        path,
        latency=np.asarray(latency, dtype=np.float64),
        importance=np.asarray(importance, dtype=np.float64),
        optional=np.asarray(sorted(optional), dtype=np.int64),
    )


def load_npz(path) -> dict[str, np.ndarray]:
    """Load a combax ``.npz``: a dict with ``latency``, ``importance`` and ``optional`` (empty if absent)."""
    with np.load(path) as data:
        missing = [k for k in ("latency", "importance") if k not in data]
        if missing:
            raise ValueError(f"`path` {str(path)!r} must hold arrays 'latency' and 'importance'; missing {missing}")
        out = {"latency": data["latency"], "importance": data["importance"]}
        out["optional"] = data["optional"] if "optional" in data else np.zeros(0, np.int64)
    return out
