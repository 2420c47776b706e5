"""The house's layering, read from the imports of every module: no stage imports one
above it (sources < models < runtime < evaluation < fleet, with the foundations below them all),
the forecaster never imports the adapter, and the API layer never reaches Prometheus."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from harness.net import REPO

FORECASTER_ORDER = (
    ("forecaster.times",),
    ("forecaster.selector",),
    ("forecaster.promql", "forecaster.schedules"),
    ("forecaster.config",),
    ("forecaster.forecast",),
    ("forecaster.policy",),
    ("forecaster.sources",),
    ("forecaster.models",),
    ("forecaster.runtime",),
    ("forecaster.evaluation",),
    ("forecaster.fleet",),
)
"""Each row may import the rows above it and itself, never a row below."""

MAX_LINES = 350


def _modules(package: str) -> list[Path]:
    return sorted(
        p for p in (REPO / package).rglob("*.py") if not p.name.startswith("externalscaler_pb2")
    )


def _name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module an import statement of `path` names, relative ones resolved."""
    tree = ast.parse(path.read_text())
    here = _name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)
    return out


def _rank(module: str) -> int | None:
    for i, row in enumerate(FORECASTER_ORDER):
        if any(module == p or module.startswith(p + ".") for p in row):
            return i
    return None


def test_the_layer_table_knows_every_forecaster_module():
    for path in _modules("forecaster"):
        name = _name(path)
        assert name == "forecaster" or _rank(name) is not None, f"{name} has no layer"


@pytest.mark.parametrize("path", _modules("forecaster"), ids=_name)
def test_no_forecaster_module_imports_one_above_it(path: Path):
    name = _name(path)
    if name == "forecaster":
        return  # the package's lazy index of public names
    mine = _rank(name)
    assert mine is not None
    for imported in _imports(path):
        assert not imported.startswith("adapter"), f"{name} imports {imported}"
        theirs = _rank(imported)
        assert theirs is None or theirs <= mine, f"{name} imports {imported}, a higher layer"


@pytest.mark.parametrize("path", _modules("adapter/server"), ids=_name)
def test_the_api_server_never_reaches_a_source(path: Path):
    """The HTTP layer asks a provider; it never builds PromQL nor reads a source."""
    for imported in _imports(path):
        assert not imported.startswith(("forecaster.sources", "forecaster.promql")), imported
        assert not imported.startswith("forecaster.runtime"), imported


@pytest.mark.parametrize(
    "path", [*_modules("forecaster"), *_modules("adapter")], ids=lambda p: _name(p)
)
def test_no_module_is_over_350_lines(path: Path):
    assert len(path.read_text().splitlines()) <= MAX_LINES


@pytest.mark.parametrize("path", sorted((REPO / "bench").glob("*.py")), ids=lambda p: p.stem)
def test_benchmarks_do_not_import_the_tests(path: Path):
    assert not any(m == "tests" or m.startswith("tests.") for m in _imports(path))


@pytest.mark.parametrize("path", sorted((REPO / "bench").glob("*.py")), ids=lambda p: p.stem)
def test_every_benchmark_imports(path: Path):
    """A benchmark no test runs must still match the code it measures."""
    importlib.import_module(f"bench.{path.stem}")
