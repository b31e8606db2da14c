"""Latency measurement: onnxruntime and XLA backends, TensorRT errors, trtexec interop."""

import json
import re

import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="onnxruntime timing needs the `onnx` extra")

from combax.adapters.export import export_onnx  # noqa: E402
from combax.adapters.latency import (  # noqa: E402
    Timing,
    measure,
    read_trtexec_times,
    timing_from_samples,
    write_trtexec_jobs,
)


def _apply(p, x):
    return jnp.tanh(x @ p["w"]) @ p["v"]


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    rng = np.random.default_rng(0)
    params = {"w": rng.normal(size=(64, 128)).astype(np.float32), "v": rng.normal(size=(128, 8)).astype(np.float32)}
    x = rng.normal(size=(16, 64)).astype(np.float32)
    path = export_onnx(_apply, params, x, tmp_path_factory.mktemp("lat") / "mlp.onnx")
    return path, params, x


def _check_timing(t: Timing, backend: str, runs: int):
    assert t.backend == backend
    assert t.n_runs == runs
    assert 0 < t.p10_ms <= t.median_ms <= t.p90_ms
    assert t.std_ms >= 0 and t.mean_ms > 0
    assert t.cpu_median_ms is not None and t.cpu_median_ms >= 0  # process CPU time is measured beside wall time


def test_measure_onnxruntime(small_model):
    path, _, x = small_model
    t = measure(path, x, warmup=2, runs=7, threads=1)
    _check_timing(t, "onnxruntime", 7)
    assert t.device == "cpu (1 threads)"


def test_measure_xla(small_model):
    _, params, x = small_model
    t = measure((_apply, params), x, backend="xla", warmup=2, runs=5)
    _check_timing(t, "xla", 5)
    assert t.device.startswith("cpu")


def test_bigger_model_is_slower(tmp_path):
    """Timing sees work: a 16x wider layer takes longer (medians, same backend, same process)."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(64, 256)).astype(np.float32)
    times = []
    for width in (32, 2048):
        p = {"w": rng.normal(size=(256, width)).astype(np.float32), "v": rng.normal(size=(width, 8)).astype(np.float32)}
        path = export_onnx(_apply, p, x, tmp_path / f"w{width}.onnx")
        times.append(measure(path, x, warmup=3, runs=15, threads=1).median_ms)
    assert times[1] > times[0]


def test_timing_from_samples_statistics():
    t = timing_from_samples([1.0, 2.0, 3.0, 4.0, 100.0], "onnxruntime", "cpu")
    assert t.median_ms == 3.0
    assert t.mean_ms == pytest.approx(22.0)
    assert t.std_ms == pytest.approx(np.std([1.0, 2.0, 3.0, 4.0, 100.0]))
    assert t.p10_ms == pytest.approx(np.percentile([1, 2, 3, 4, 100], 10))
    assert t.cpu_median_ms is None
    assert timing_from_samples([1.0, 2.0], "xla", "cpu", cpu_samples_ms=[0.5, 1.5, 4.0]).cpu_median_ms == 1.5
    with pytest.raises(ValueError, match=re.escape("`samples_ms` must hold at least one time; got none")):
        timing_from_samples([], "x", "y")


@pytest.mark.parametrize(
    ("kwargs", "msg"),
    [
        ({"backend": "torch"}, "`backend` must be one of ('onnxruntime', 'xla', 'tensorrt'); got 'torch'"),
        ({"runs": 0}, "`runs` must be an integer >= 1; got 0"),
        ({"warmup": -1}, "`warmup` must be an integer >= 0; got -1"),
        ({"threads": 0}, "`threads` must be None or an integer >= 1; got 0"),
    ],
)
def test_measure_rejects_bad_arguments(small_model, kwargs, msg):
    path, _, x = small_model
    with pytest.raises(ValueError, match=re.escape(msg)):
        measure(path, x, **kwargs)


def test_measure_rejects_wrong_model_kind(small_model, tmp_path):
    path, params, x = small_model
    with pytest.raises(ValueError, match=re.escape("`model` must be an `(apply_fn, params)` tuple for backend 'xla'")):
        measure(path, x, backend="xla")
    with pytest.raises(ValueError, match=re.escape("`model` must be an ONNX file path for backend 'onnxruntime'")):
        measure((_apply, params), x)
    with pytest.raises(ValueError, match=re.escape("`model` must be an existing ONNX file")):
        measure(tmp_path / "missing.onnx", x)


def test_tensorrt_backend(small_model):
    """Where TensorRT and a GPU exist, it times; elsewhere the error names the `tensorrt` extra or the GPU."""
    path, _, x = small_model
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match=re.escape("combax[tensorrt]")):
            measure(path, x, backend="tensorrt")
        return
    try:
        t = measure(path, x, backend="tensorrt", warmup=5, runs=10)
    except (RuntimeError, ImportError) as exc:  # TensorRT installed but no GPU / cuda-python here
        assert "GPU" in str(exc) or "tensorrt" in str(exc)
        pytest.skip(f"TensorRT is installed but cannot run here: {exc}")
    _check_timing(t, "tensorrt", 10)


def test_trtexec_roundtrip(small_model, tmp_path):
    path, _, _ = small_model
    script = write_trtexec_jobs([path], tmp_path / "gpu", warmup_ms=500, iterations=20)
    lines = script.read_text().splitlines()
    assert (tmp_path / "gpu" / "mlp.onnx").is_file()
    assert (
        lines[-1]
        == "trtexec --onnx=mlp.onnx --warmUp=500 --iterations=20 --avgRuns=1 --exportTimes=mlp.onnx.times.json"
    )
    # what trtexec writes: a list of per-inference records (a leading count record is skipped)
    records = [{"count": 4}] + [
        {"startComputeMs": 10.0 * i, "endComputeMs": 10.0 * i + c, "computeMs": c, "latencyMs": c + 0.5}
        for i, c in enumerate([1.0, 2.0, 3.0, 10.0])
    ]
    times = tmp_path / "gpu" / "mlp.onnx.times.json"
    times.write_text(json.dumps(records))
    t = read_trtexec_times(times)
    assert (t.backend, t.n_runs, t.median_ms, t.mean_ms) == ("trtexec", 4, 2.5, 4.0)
    assert read_trtexec_times(times, key="latencyMs").median_ms == 3.0
    with pytest.raises(ValueError, match=re.escape("has the key 'gpuMs'")):
        read_trtexec_times(times, key="gpuMs")


def test_trtexec_jobs_rejects_missing_files(tmp_path):
    with pytest.raises(ValueError, match=re.escape("`onnx_paths` must name at least one ONNX file; got none")):
        write_trtexec_jobs([], tmp_path)
    with pytest.raises(ValueError, match=re.escape("`onnx_paths` must be existing files")):
        write_trtexec_jobs([tmp_path / "no.onnx"], tmp_path)
