import numpy as np
import pytest

from combax.adapters.checkpoint import load_checkpoint, save_checkpoint


def test_round_trip_keeps_arrays_dtypes_and_meta(tmp_path):
    v = {
        "params": {"conv1": {"kernel": np.arange(6, dtype=np.float32).reshape(2, 3)}},
        "batch_stats": {"bn1": {"mean": np.zeros(3, np.float32)}},
    }
    path = save_checkpoint(tmp_path / "sub" / "base.msgpack", v, {"model": "resnet20", "epochs": 4})
    back, meta = load_checkpoint(path)
    np.testing.assert_array_equal(back["params"]["conv1"]["kernel"], v["params"]["conv1"]["kernel"])
    assert back["params"]["conv1"]["kernel"].dtype == np.float32
    np.testing.assert_array_equal(back["batch_stats"]["bn1"]["mean"], np.zeros(3))
    assert meta == {"model": "resnet20", "epochs": 4}


def test_a_file_that_is_not_a_checkpoint_is_refused_with_its_path(tmp_path):
    bad = tmp_path / "notes.msgpack"
    bad.write_bytes(b"not msgpack at all \x00\xff")
    with pytest.raises(ValueError, match="is not a combax checkpoint"):
        load_checkpoint(bad)
