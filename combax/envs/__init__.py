"""Pure-JAX environments with ``reset(key, params)`` / ``step(key, state, action, params)`` that jit and vmap.

* :class:`DeepSea` — bsuite's DeepSea with the randomised per-cell action mapping.
* :class:`MountainCar` — MountainCar-v0 with a sparse reward.

``step`` never resets; training loops reset finished episodes themselves (:mod:`combax.adapters.exploration`).
"""

from combax.envs.deepsea import DeepSea, DeepSeaParams, DeepSeaState, EnvStep
from combax.envs.mountaincar import MountainCar, MountainCarParams, MountainCarState

__all__ = [
    "DeepSea",
    "DeepSeaParams",
    "DeepSeaState",
    "EnvStep",
    "MountainCar",
    "MountainCarParams",
    "MountainCarState",
    "make_env",
]


def make_env(name: str, size: int = 10):
    """``make_env("deepsea", size)`` or ``make_env("mountaincar")``."""
    if name == "deepsea":
        return DeepSea(size=size)
    if name == "mountaincar":
        return MountainCar()
    raise ValueError(f"`name` must be 'deepsea' or 'mountaincar'; got {name!r}")
