"""Import optional dependencies with an error that names the extra to install."""

import importlib
from types import ModuleType


def require(module: str, extra: str, purpose: str = "") -> ModuleType:
    """Import ``module`` or raise an ImportError telling the user which extra provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        what = f" for {purpose}" if purpose else ""
        raise ImportError(
            f"`{module}` is needed{what} but is not installed; install it with `pip install 'combax[{extra}]'`."
        ) from exc
