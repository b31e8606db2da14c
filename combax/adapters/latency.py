"""Wall-clock latency of a network: onnxruntime, jitted XLA, TensorRT, and trtexec interop.

One entry point, :func:`measure`, times a model with warm-up and repeated runs and returns a :class:`Timing`
(median, mean, spread). The depth-compression protocol of the paper (Kim et al., ICML 2023, arXiv 2301.12187,
spec §3.1) times FP32 TensorRT engines on a GPU; on a CPU-only machine combax times the same ONNX graphs with
onnxruntime. For a GPU box without Python TensorRT, :func:`write_trtexec_jobs` writes the ONNX files plus the
``trtexec`` command lines, and :func:`read_trtexec_times` turns the ``--exportTimes`` JSON back into a Timing.
"""

from __future__ import annotations

import json
import pathlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from combax._optional import require

__all__ = ["Timing", "measure", "timing_from_samples", "write_trtexec_jobs", "read_trtexec_times"]

_BACKENDS = ("onnxruntime", "xla", "tensorrt")


@dataclass(frozen=True, slots=True)
class Timing:
    """Latency statistics of repeated runs, in milliseconds per call (one batch).

    Attributes
    ----------
    median_ms, mean_ms, std_ms : the median, mean and standard deviation over the timed runs.
    p10_ms, p90_ms : the 10th and 90th percentiles (the spread the median sits in).
    n_runs : number of timed runs (warm-up excluded).
    backend : ``"onnxruntime"``, ``"xla"``, ``"tensorrt"`` or ``"trtexec"``.
    device : what ran it, e.g. ``"cpu (2 threads)"`` or a GPU name.
    cpu_median_ms : median process CPU time per run (``time.process_time``, every thread of this process), or
        None where not measured (TensorRT, trtexec). It leaves out the time the process waits for a core, so on a
        shared machine it is the load-robust companion of the wall time; with one thread the two agree when idle.
    """

    median_ms: float
    mean_ms: float
    std_ms: float
    p10_ms: float
    p90_ms: float
    n_runs: int
    backend: str
    device: str
    cpu_median_ms: float | None = None


def timing_from_samples(
    samples_ms: Sequence[float], backend: str, device: str, cpu_samples_ms: Sequence[float] | None = None
) -> Timing:
    """Summarise per-run wall times (ms), and optionally process CPU times (ms), into a :class:`Timing`.

    Raises
    ------
    ValueError
        ``samples_ms`` is empty or holds a negative or non-finite value.
    """
    s = np.asarray(samples_ms, dtype=np.float64).ravel()
    if s.size == 0:
        raise ValueError("`samples_ms` must hold at least one time; got none")
    if not np.all(np.isfinite(s)) or np.any(s < 0):
        raise ValueError("`samples_ms` must be finite and >= 0")
    p10, p50, p90 = np.percentile(s, [10, 50, 90])
    return Timing(
        median_ms=float(p50),
        mean_ms=float(s.mean()),
        std_ms=float(s.std()),
        p10_ms=float(p10),
        p90_ms=float(p90),
        n_runs=int(s.size),
        backend=backend,
        device=device,
        cpu_median_ms=None if cpu_samples_ms is None else float(np.median(cpu_samples_ms)),
    )


def _measure_iv(model, example_input, backend, warmup, runs, threads):
    if backend not in _BACKENDS:
        raise ValueError(f"`backend` must be one of {_BACKENDS}; got {backend!r}")
    if int(warmup) != warmup or warmup < 0:
        raise ValueError(f"`warmup` must be an integer >= 0; got {warmup!r}")
    if int(runs) != runs or runs < 1:
        raise ValueError(f"`runs` must be an integer >= 1; got {runs!r}")
    if threads is not None and (int(threads) != threads or threads < 1):
        raise ValueError(f"`threads` must be None or an integer >= 1; got {threads!r}")
    if backend == "xla":
        if not (isinstance(model, tuple) and len(model) == 2 and callable(model[0])):
            raise ValueError(
                f"`model` must be an `(apply_fn, params)` tuple for backend 'xla'; got {type(model).__name__}"
            )
    else:
        if not isinstance(model, str | pathlib.Path):
            raise ValueError(f"`model` must be an ONNX file path for backend {backend!r}; got {type(model).__name__}")
        if not pathlib.Path(model).is_file():
            raise ValueError(f"`model` must be an existing ONNX file; got {str(model)!r}")
    x = np.asarray(example_input, dtype=np.float32)
    if x.ndim < 1:
        raise ValueError(f"`example_input` must be an array of rank >= 1; got shape {x.shape}")
    return x


def _time_loop(call: Callable[[], Any], warmup: int, runs: int) -> tuple[list[float], list[float]]:
    """(wall ms, process CPU ms) of each timed run."""
    for _ in range(warmup):
        call()
    wall, cpu = [], []
    for _ in range(runs):
        t0, c0 = time.perf_counter(), time.process_time()
        call()
        wall.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.process_time() - c0) * 1e3)
    return wall, cpu


def _ort_session(path, threads):
    ort = require("onnxruntime", "onnx", "timing ONNX models")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads is not None:
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _measure_onnxruntime(path, x, warmup, runs, threads) -> Timing:
    import os

    sess = _ort_session(path, threads)
    feed = {sess.get_inputs()[0].name: x}
    wall, cpu = _time_loop(lambda: sess.run(None, feed), warmup, runs)
    n = threads if threads is not None else os.cpu_count()
    return timing_from_samples(wall, "onnxruntime", f"cpu ({n} threads)", cpu)


def _measure_xla(model, x, warmup, runs) -> Timing:
    import jax

    apply_fn, params = model
    fn = jax.jit(apply_fn)
    xd = jax.device_put(x)
    jax.block_until_ready(fn(params, xd))  # compile outside the timed loop
    samples, cpu = _time_loop(lambda: jax.block_until_ready(fn(params, xd)), warmup, runs)
    dev = jax.devices()[0]
    return timing_from_samples(samples, "xla", f"{dev.platform} ({dev.device_kind})", cpu)


def _cudart():
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        cudart = require("cuda.cudart", "tensorrt", "TensorRT timing (cuda-python)")
    return cudart


def _check(err_and_vals):
    err = err_and_vals[0] if isinstance(err_and_vals, tuple) else err_and_vals
    if int(err) != 0:
        raise RuntimeError(f"CUDA runtime call failed with error {err}")
    if isinstance(err_and_vals, tuple):
        rest = err_and_vals[1:]
        return rest[0] if len(rest) == 1 else rest
    return None


def _measure_tensorrt(path, x, warmup, runs) -> Timing:
    """Build an FP32 engine from the ONNX file and time it with CUDA events (spec §3.1)."""
    trt = require("tensorrt", "tensorrt", "TensorRT timing")
    cudart = _cudart()
    err, n_dev = cudart.cudaGetDeviceCount()
    if int(err) != 0 or n_dev == 0:
        raise RuntimeError(
            "backend 'tensorrt' needs a CUDA GPU, and none was found; time on a GPU machine with "
            "`pip install 'combax[tensorrt]'`, or use `write_trtexec_jobs` there"
        )
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(pathlib.Path(path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {path}: {errors}")
    config = builder.create_builder_config()
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RuntimeError(f"TensorRT could not build an engine for {path}")
    engine = trt.Runtime(logger).deserialize_cuda_engine(plan)
    context = engine.create_execution_context()
    stream = _check(cudart.cudaStreamCreate())
    buffers = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        shape = tuple(context.get_tensor_shape(name))
        nbytes = int(np.prod(shape)) * np.dtype(trt.nptype(engine.get_tensor_dtype(name))).itemsize
        ptr = _check(cudart.cudaMalloc(nbytes))
        buffers.append(ptr)
        context.set_tensor_address(name, int(ptr))
        if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
            kind = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
            _check(cudart.cudaMemcpy(ptr, np.ascontiguousarray(x).ctypes.data, x.nbytes, kind))
    start, end = _check(cudart.cudaEventCreate()), _check(cudart.cudaEventCreate())
    try:
        for _ in range(warmup):
            context.execute_async_v3(stream)
        _check(cudart.cudaStreamSynchronize(stream))
        samples = []
        for _ in range(runs):
            _check(cudart.cudaEventRecord(start, stream))
            context.execute_async_v3(stream)
            _check(cudart.cudaEventRecord(end, stream))
            _check(cudart.cudaEventSynchronize(end))
            samples.append(float(_check(cudart.cudaEventElapsedTime(start, end))))
        props = _check(cudart.cudaGetDeviceProperties(0))
        device = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    finally:
        for ptr in buffers:
            cudart.cudaFree(ptr)
        cudart.cudaStreamDestroy(stream)
    return timing_from_samples(samples, "tensorrt", device.strip("\x00"))


def measure(
    model: str | pathlib.Path | tuple[Callable, Any],
    example_input: Any,
    *,
    backend: str = "onnxruntime",
    warmup: int = 10,
    runs: int = 50,
    threads: int | None = None,
) -> Timing:
    """Time one forward pass of ``model`` on ``example_input``: warm-up, then ``runs`` timed calls.

    Parameters
    ----------
    model : an ONNX file path (backends ``"onnxruntime"`` and ``"tensorrt"``) or an ``(apply_fn, params)`` tuple
        with ``apply_fn(params, x) -> y`` a pure JAX function (backend ``"xla"``: jitted once, compiled outside the
        timed loop, every call ends with ``block_until_ready``).
    example_input : array, cast to float32; the exported input shape for ONNX models.
    backend : ``"onnxruntime"`` (default; CPU execution provider, all graph optimisations), ``"xla"`` or
        ``"tensorrt"`` (FP32 engine built from the ONNX file with the TensorRT Python API, timed with CUDA events).
    warmup : untimed calls first (>= 0).
    runs : timed calls (>= 1).
    threads : onnxruntime intra-op threads (None = its default). Ignored by ``"xla"``, whose CPU thread pool is
        fixed when the process starts (``XLA_FLAGS``), and by ``"tensorrt"``.

    Returns
    -------
    Timing
        Median, mean, standard deviation and 10th/90th percentiles of the per-call time in ms.

    Raises
    ------
    ValueError
        Unknown backend, a model of the wrong kind for it, a missing file, ``warmup`` < 0, ``runs`` < 1.
    ImportError
        The backend's package is missing (extra ``onnx`` for onnxruntime, ``tensorrt`` for TensorRT).
    RuntimeError
        Backend ``"tensorrt"`` without a CUDA GPU, or TensorRT failed to parse/build the ONNX file.

    Notes
    -----
    Cost: ``warmup + runs`` forward passes plus one session/engine build (or jit compile). Report the median: on a
    shared machine the mean is pulled up by other processes; the spread (p10..p90) says how noisy the run was.
    """
    x = _measure_iv(model, example_input, backend, warmup, runs, threads)
    if backend == "onnxruntime":
        return _measure_onnxruntime(model, x, int(warmup), int(runs), threads)
    if backend == "xla":
        return _measure_xla(model, x, int(warmup), int(runs))
    return _measure_tensorrt(model, x, int(warmup), int(runs))


def write_trtexec_jobs(
    onnx_paths: Sequence[str | pathlib.Path],
    out_dir: str | pathlib.Path,
    *,
    warmup_ms: int = 2000,
    iterations: int = 1000,
    trtexec: str = "trtexec",
) -> pathlib.Path:
    """Write a shell script that times every ONNX file with ``trtexec`` on a GPU machine.

    Each line is ``trtexec --onnx=<file> --warmUp=<warmup_ms> --iterations=<iterations> --avgRuns=1
    --exportTimes=<file>.times.json`` (FP32, the spec's protocol). Copy ``out_dir`` to the GPU box, run
    ``sh trtexec_jobs.sh`` there, copy it back and read each ``*.times.json`` with :func:`read_trtexec_times`.

    Parameters
    ----------
    onnx_paths : ONNX files; they are copied into ``out_dir`` if they live elsewhere.
    out_dir : folder for the script (``trtexec_jobs.sh``) and the ONNX files.
    warmup_ms : trtexec warm-up duration in ms.
    iterations : minimum number of timed inferences.
    trtexec : the trtexec executable name or path on the GPU machine.

    Returns
    -------
    pathlib.Path
        The script. File names in it are relative to ``out_dir``.

    Raises
    ------
    ValueError
        No files given, a file that does not exist, two files with the same name, or ``iterations`` < 1.
    """
    import shlex
    import shutil

    paths = [pathlib.Path(p) for p in onnx_paths]
    if not paths:
        raise ValueError("`onnx_paths` must name at least one ONNX file; got none")
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise ValueError(f"`onnx_paths` must be existing files; missing {missing}")
    names = [p.name for p in paths]
    if len(set(names)) != len(names):
        raise ValueError(f"`onnx_paths` must have distinct file names; got {names}")
    if iterations < 1 or warmup_ms < 0:
        raise ValueError(f"`iterations` must be >= 1 and `warmup_ms` >= 0; got {iterations} and {warmup_ms}")
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lines = ["#!/bin/sh", "# Generated by combax.adapters.latency.write_trtexec_jobs; run from this folder.", "set -e"]
    for p in paths:
        dst = out / p.name
        if dst.resolve() != p.resolve():
            shutil.copyfile(p, dst)
        stem = shlex.quote(p.name)
        times = shlex.quote(p.name + ".times.json")
        lines.append(
            f"{shlex.quote(trtexec)} --onnx={stem} --warmUp={int(warmup_ms)} --iterations={int(iterations)} "
            f"--avgRuns=1 --exportTimes={times}"
        )
    script = out / "trtexec_jobs.sh"
    script.write_text("\n".join(lines) + "\n")
    script.chmod(0o755)
    return script


def read_trtexec_times(path: str | pathlib.Path, *, key: str = "computeMs", device: str = "gpu (trtexec)") -> Timing:
    """Read a ``trtexec --exportTimes`` JSON file into a :class:`Timing`.

    The file is a JSON list with one object per inference (``computeMs``, ``latencyMs``, ``h2dMs``, ...; older
    TensorRT releases name them ``inMs``/``outMs``); objects without ``key`` (a leading count record) are skipped.

    Parameters
    ----------
    path : the JSON file written by ``--exportTimes``.
    key : which per-inference time to summarise: ``"computeMs"`` (GPU compute, the default) or ``"latencyMs"``
        (host-to-device, compute and device-to-host).
    device : recorded in the Timing.

    Raises
    ------
    ValueError
        The file is not a JSON list, or no record has ``key``.
    """
    data = json.loads(pathlib.Path(path).read_text())
    if not isinstance(data, list):
        raise ValueError(f"`path` must hold a trtexec --exportTimes JSON list; got {type(data).__name__}")
    samples = [float(r[key]) for r in data if isinstance(r, dict) and key in r]
    if not samples:
        raise ValueError(f"no record in {str(path)!r} has the key {key!r}")
    return timing_from_samples(samples, "trtexec", device)
