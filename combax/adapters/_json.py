"""JSON-ready copies of the pipelines' result dicts."""

import math

import numpy as np


def json_ready(x):
    """``x`` with dict keys as str, tuples as lists, NumPy scalars as Python ones and NaN / inf as None."""
    if isinstance(x, dict):
        return {str(k): json_ready(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [json_ready(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x
