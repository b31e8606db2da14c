"""Shared by the benchmarks: numba first-call timing in a fresh interpreter, writing results, and notes."""

import json
import os
import subprocess
import sys
import tempfile


def bnb_nodes_note() -> str:
    """What the channel B&B's node counts mean, for the benchmarks' markdown (from the solver's own constants)."""
    from combax.solvers import _channels_bnb as bnb

    return (
        "B&B nodes are those of its main search tree; its window search at the root evaluates its own (at most "
        f"{bnb.WINDOW_NODES} per window of {bnb.WINDOW} maps, in at most {bnb.WINDOW_SHARE * 100:g} % of the limit; "
        "counted in the result's message)."
    )


def first_call_seconds(snippet: str, cache_dir: str | None = None) -> float:
    """Run ``snippet`` (which prints its own elapsed seconds last) in a fresh interpreter; ``cache_dir`` sets
    ``NUMBA_CACHE_DIR`` (an empty folder gives the cold-compile time, None the warm on-disk cache)."""
    env = dict(os.environ)
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = cache_dir
    out = subprocess.run([sys.executable, "-c", snippet], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def compile_times(snippet: str, results: dict, bar=None) -> None:
    """Store ``numba_first_call_cold_cache_s`` (empty cache: compile) and ``numba_first_call_warm_cache_s`` in
    ``results``, advancing the progress ``bar`` once per measurement."""
    with tempfile.TemporaryDirectory() as cold:
        results["numba_first_call_cold_cache_s"] = first_call_seconds(snippet, cold)
    if bar is not None:
        bar.update()
    results["numba_first_call_warm_cache_s"] = first_call_seconds(snippet)
    if bar is not None:
        bar.update()


def write_results(out_dir, name: str, result: dict, md: str) -> None:
    """Write ``<name>.json`` (``result``) and ``<name>.md`` (``md``) under ``out_dir`` and print the table."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (out_dir / f"{name}.md").write_text(md)
    print(md)
