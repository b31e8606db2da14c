"""Checkpoints of Flax variables: one plain msgpack file (``flax.serialization``) holding the variables as NumPy
arrays and a JSON ``meta`` string that says how they were made (model, recipe, seed), so a pipeline can refuse a
checkpoint of another network before using it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

__all__ = ["save_checkpoint", "load_checkpoint", "to_numpy"]


def to_numpy(tree):
    """The nested dict ``tree`` with every leaf as a NumPy array (jax arrays and FrozenDicts included)."""
    if isinstance(tree, dict) or hasattr(tree, "items"):
        return {str(k): to_numpy(v) for k, v in tree.items()}
    return np.asarray(tree)


def save_checkpoint(path, variables, meta: dict) -> Path:
    """Write ``variables`` and the JSON-serialisable ``meta`` to ``path`` (msgpack); parent folders are created."""
    from flax import serialization

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"meta": json.dumps(meta, sort_keys=True), "variables": to_numpy(variables)}
    path.write_bytes(serialization.msgpack_serialize(record))
    return path


def load_checkpoint(path) -> tuple[dict, dict]:
    """``(variables, meta)`` from :func:`save_checkpoint`.

    Raises
    ------
    ValueError
        ``path`` is not a checkpoint written by :func:`save_checkpoint`.
    """
    from flax import serialization

    path = Path(path)
    try:
        record = serialization.msgpack_restore(path.read_bytes())
    except Exception as exc:  # msgpack raises several unrelated types on foreign bytes
        raise ValueError(f"`checkpoint`: {path} is not a combax checkpoint (msgpack): {exc}") from None
    if not isinstance(record, dict) or set(record) != {"meta", "variables"}:
        raise ValueError(f"`checkpoint`: {path} is not a combax checkpoint (expected keys meta and variables)")
    return record["variables"], json.loads(record["meta"])
