"""The layering rules of DESIGN.md, checked in fresh interpreters and by reading the source."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "combax"


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys; print('\\n'.join(sys.modules))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return set(out.split())


PUBLIC_SOLVERS = sorted(p.stem for p in (ROOT / "solvers").glob("*.py") if not p.stem.startswith("_"))


@pytest.mark.parametrize("family", ["", *(f".{name}" for name in PUBLIC_SOLVERS)])
def test_solvers_import_without_jax(family):
    loaded = _modules_after(f"import combax.solvers{family}")
    forbidden = {"jax", "flax", "optax", "combax.models", "combax.adapters", "ortools", "pulp", "torch"}
    assert not (loaded & forbidden), f"combax.solvers{family} imported {sorted(loaded & forbidden)}"


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the package
                pkg = path.relative_to(ROOT.parent).with_suffix("").parts[: -node.level]
                names.add(".".join(pkg + ((node.module,) if node.module else ())))
            elif node.module:
                names.add(node.module)
    return names


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("solvers", ("jax", "flax", "optax", "combax.models", "combax.adapters")),
        ("models", ("combax.solvers", "combax.adapters")),
    ],
)
def test_package_source_respects_layers(package, forbidden):
    offenders = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for name in _imports(path):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                offenders.append(f"{path.relative_to(ROOT.parent)} imports {name}")
    assert not offenders, "\n".join(offenders)
