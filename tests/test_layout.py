"""The domain stays plain Python: no module under operators/ imports a framework or a client
(Bytewax, Kafka, DuckDB), so its logic runs and is tested without them; the wiring lives in
flows/, connectors/ and sinks/."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

OPERATORS = Path(__file__).resolve().parents[1] / "operators"
FORBIDDEN = ("bytewax", "confluent_kafka", "duckdb")


def _imported(path: Path) -> set[str]:
    """The top-level package of every module `path` imports, at any depth of the file."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize(
    "path", sorted(OPERATORS.rglob("*.py")), ids=lambda p: str(p.relative_to(OPERATORS))
)
def test_no_domain_module_imports_a_framework(path: Path) -> None:
    assert not _imported(path) & set(FORBIDDEN)


def test_the_check_sees_an_import() -> None:
    assert "bytewax" in _imported(Path(__file__).parents[1] / "flows" / "market_sync.py")
