import json
import math

import numpy as np

from combax.adapters._json import json_ready


def test_json_ready_turns_numpy_scalars_tuples_and_non_finite_floats_into_plain_json():
    out = json_ready(
        {1: (np.float64(math.nan), np.int64(3)), "a": [math.inf, 2.5, np.bool_(True)], "b": {"c": -math.inf}}
    )
    assert out == {"1": [None, 3], "a": [None, 2.5, True], "b": {"c": None}}
    assert json.loads(json.dumps(out, allow_nan=False)) == out
    assert type(out["1"][1]) is int
