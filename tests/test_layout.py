"""The layout keeps its one direction: the core imports nothing from training, the server or the bridges."""

from __future__ import annotations

import ast
import json
from pathlib import Path

from llaqo_backend.protocol import json_schema

REPO = Path(__file__).resolve().parents[1]
# folder → import name, as pyproject.toml's package-dir maps them
PACKAGES = {"llaqo_model": "llaqo_model", "training": "llaqo_training", "backend": "llaqo_backend",
            "plugin_bridge": "llaqo_bridge"}
# who may import whom: the core only itself; training and backend the core; bridges only themselves
ALLOWED = {
    "llaqo_model": {"llaqo_model"},
    "llaqo_training": {"llaqo_model", "llaqo_training"},
    "llaqo_backend": {"llaqo_model", "llaqo_backend"},
    "llaqo_bridge": {"llaqo_bridge"},
}


def imported_packages(path: Path) -> set[str]:
    """Top-level llaqo_* packages a source file imports (at module level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        found |= {n.split(".")[0] for n in names if n.startswith("llaqo_")}
    return found


def backward_edges() -> list[str]:
    edges = []
    for folder, package in PACKAGES.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            for target in imported_packages(path) - ALLOWED[package]:
                edges.append(f"{path.relative_to(REPO)} imports {target}")
    return edges


def test_no_import_runs_backwards() -> None:
    assert backward_edges() == []


def test_the_walker_sees_imports_inside_functions(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from llaqo_training.corpus import build\n    import llaqo_backend.server\n")
    assert imported_packages(source) == {"llaqo_training", "llaqo_backend"}


def test_shipped_protocol_schema_is_the_one_the_code_generates() -> None:
    shipped = json.loads((REPO / "docs" / "protocol.schema.json").read_text(encoding="utf-8"))
    assert shipped == json_schema(), "regenerate: python -m llaqo_backend.protocol > docs/protocol.schema.json"
