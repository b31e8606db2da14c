"""``combax demo``: a tour of every finished capability on bundled inputs.

Each module of :mod:`combax.commands` that defines ``demo(out_dir) -> list[DemoRow]`` contributes a step, run in
order of its ``DEMO_ORDER``. The tour prints one results table and writes it, with every plot, to ``out_dir``.
"""

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from combax import __version__


@dataclass(frozen=True, slots=True)
class DemoRow:
    """One line of the demo's results table.

    Attributes
    ----------
    step : the capability (``"data"``, ``"depth"``, ...).
    task : what was run, on which input.
    result : the headline numbers.
    check : how the result was verified (an oracle, a recomputation), or ``""``.
    seconds : wall time of the run.
    """

    step: str
    task: str
    result: str
    check: str
    seconds: float


def _data_step(out_dir: Path) -> list[DemoRow]:
    from combax.data import available

    rows = []
    for name, desc in available().items():
        t0 = time.perf_counter()
        rows.append(DemoRow("data", f"load {name}", desc, "", time.perf_counter() - t0))
    return rows


def demo_steps() -> list[tuple[str, object]]:
    """(name, callable) of every demo step, in tour order."""
    from combax.cli import command_modules

    steps = [(0, "data", _data_step)]
    for module in command_modules():
        if hasattr(module, "demo"):
            name = module.__name__.rsplit(".", 1)[-1]
            steps.append((getattr(module, "DEMO_ORDER", 100), name, module.demo))
    return [(name, fn) for _, name, fn in sorted(steps, key=lambda s: (s[0], s[1]))]


def format_table(rows: list[DemoRow]) -> str:
    """The rows as a Markdown table."""
    head = ("step", "task", "result", "check", "seconds")
    body = [(r.step, r.task, r.result, r.check, f"{r.seconds:.2f}") for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(head), sep, *(line(b) for b in body)])


def run_demo(out_dir: str | Path = "demo_out", only=None) -> list[DemoRow]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    print(f"combax {__version__} demo: results and plots go to {out}/")
    steps = demo_steps()
    if only:
        unknown = set(only) - {name for name, _ in steps}
        if unknown:
            raise SystemExit(f"`--only`: unknown step(s) {sorted(unknown)}; choose from {[n for n, _ in steps]}")
        steps = [(n, f) for n, f in steps if n in only]
    rows: list[DemoRow] = []
    t_start = time.perf_counter()
    for name, fn in steps:
        print(f"\n== {name}", flush=True)
        t0 = time.perf_counter()
        new = list(fn(out))
        for r in new:
            print(f"   {r.task}: {r.result}" + (f"  [{r.check}]" if r.check else ""))
        print(f"   ({time.perf_counter() - t0:.1f} s)")
        rows.extend(new)
    table = format_table(rows)
    print("\n" + table)
    print(f"\ntotal {time.perf_counter() - t_start:.1f} s")
    (out / "results.md").write_text(table + "\n")
    (out / "results.json").write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n")
    return rows
