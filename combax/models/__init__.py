"""JAX / Flax models, losses and pure train steps. Never imports :mod:`combax.solvers`."""
