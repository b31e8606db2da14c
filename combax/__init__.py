"""combax: exact combinatorial solvers that live inside deep learning.

Subpackages: :mod:`combax.solvers` (NumPy + numba only), :mod:`combax.models` (JAX/Flax),
:mod:`combax.adapters` (where the two meet) and :mod:`combax.data` (data that needs no download).
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
