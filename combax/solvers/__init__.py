"""Exact combinatorial solvers: NumPy arrays in, frozen dataclasses out.

This package imports only numpy, scipy and numba (never jax, flax or the rest of combax). Optional
reference backends (OR-Tools, PuLP/CBC, networkx) are imported inside the functions that use them.

Families (each a submodule, imported on first use so that ``import combax.solvers`` stays cheap):

- :mod:`combax.solvers.depth`: two-stage DP for CNN depth compression.
- :mod:`combax.solvers.channels`: channel selection as a discrete QCQP, by branch-and-bound.
- :mod:`combax.solvers.assign`: k-hot codes under convex bucket penalties (min-cost flow).
- :mod:`combax.solvers.flow`: general minimum-cost flow.
"""

import importlib

from ._status import Status

_SUBMODULES = ("depth", "channels", "assign", "flow")

__all__ = ["Status", *_SUBMODULES]


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
