"""The package is the pipeline it is: each stage imports only the stages below it.

``web`` and ``cli`` -> ``store`` -> ``engine`` -> ``cards`` -> ``clinical`` -> ``fhir`` ->
``knowledge`` -> ``contract``; ``config`` stands beside ``knowledge`` (settings, read by the
entry points only). Imports under ``TYPE_CHECKING`` count too: a type is a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cds_service"

#: What each stage may import (besides itself and the package root).
ALLOWED: dict[str, frozenset[str]] = {
    "contract": frozenset(),
    "config": frozenset({"contract"}),
    "knowledge": frozenset({"contract"}),
    "fhir": frozenset({"contract", "knowledge"}),
    "clinical": frozenset({"contract", "knowledge", "fhir"}),
    "cards": frozenset({"contract", "knowledge", "fhir", "clinical"}),
    "engine": frozenset({"contract", "knowledge", "fhir", "clinical", "cards"}),
    "store": frozenset({"contract", "engine"}),
    "web": frozenset(
        {"contract", "config", "knowledge", "fhir", "clinical", "cards", "engine", "store"}
    ),
    "cli": frozenset(
        {"contract", "config", "knowledge", "fhir", "clinical", "cards", "engine", "store", "web"}
    ),
}


def stage_of(module: str) -> str | None:
    """``cds_service.fhir.records`` -> ``fhir``; the package root -> None."""
    parts = module.split(".")
    if parts[0] != "cds_service" or len(parts) == 1:
        return None
    return parts[1]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            # "from cds_service import fhir" names a stage through the root.
            if node.module == "cds_service":
                found.update(f"cds_service.{alias.name}" for alias in node.names)
    return {name for name in found if name.startswith("cds_service")}


def violations(package: Path) -> list[str]:
    wrong = []
    for path in sorted(package.rglob("*.py")):
        module = ".".join(path.relative_to(package.parent).with_suffix("").parts)
        own = stage_of(module.removesuffix(".__init__"))
        if own is None:
            continue
        for imported in sorted(imported_modules(path)):
            other = stage_of(imported)
            if other is None or other == own:
                continue
            if own not in ALLOWED:
                wrong.append(f"{module}: {own} is not a known stage")
            elif other not in ALLOWED[own]:
                wrong.append(f"{module} ({own}) imports {imported} ({other})")
    return wrong


def test_every_top_level_module_is_a_stage() -> None:
    """The top of the package holds only the engine, config and the stage packages."""
    names = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()}
    names -= {"__init__", "__pycache__", "_hooks"}
    assert names <= set(ALLOWED), sorted(names - set(ALLOWED))


def test_imports_run_one_way() -> None:
    assert violations(PACKAGE) == []


def test_each_stage_says_what_it_owns_and_may_import() -> None:
    for stage in ALLOWED:
        init = PACKAGE / stage / "__init__.py"
        if not init.exists():  # engine.py, config.py
            continue
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert doc and "May import" in doc, stage


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from cds_service.web.app import create_app\n", "imports cds_service.web.app (web)"),
        ("import cds_service.cards.renderer\n", "imports cds_service.cards.renderer (cards)"),
        ("from cds_service import engine\n", "imports cds_service.engine (engine)"),
    ],
)
def test_the_check_sees_an_upward_import(tmp_path: Path, source: str, expected: str) -> None:
    """Proof that the direction test can fail: a clinical module importing a higher stage."""
    clinical = tmp_path / "cds_service" / "clinical"
    clinical.mkdir(parents=True)
    (clinical / "__init__.py").write_text('"""May import: fhir."""\n')
    (clinical / "bad.py").write_text(source)
    (found,) = violations(tmp_path / "cds_service")
    assert expected in found


def test_the_readme_layout_names_every_module() -> None:
    """README "Layout" is the tree of the package: each module and folder is named there."""
    readme = (PACKAGE.parent / "README.md").read_text(encoding="utf-8")
    block = readme.split("## Layout", 1)[1].split("```", 2)[1]
    missing = [
        str(path.relative_to(PACKAGE))
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.stem != "__init__" and path.name not in block
    ]
    folders = [p.name + "/" for p in PACKAGE.iterdir() if (p / "__init__.py").exists()]
    missing += [f for f in folders if f not in block]
    assert missing == []
