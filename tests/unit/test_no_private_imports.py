"""No module reaches into another module's private names: what one module needs from another is public."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# modules whose private names are looked at, and whose imports are checked
ROOTS = [REPO / "plugins" / "cdc_sync", REPO / "dags", REPO / "tools"]
# a compat shim: private as a module (not part of the API), imported on purpose
ALLOWED_MODULES = {"cdc_sync._compat"}


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_imports(source: str) -> list[str]:
    """`from m import _x`, `import m._x`, `from m._x import y` in a module's source."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            if module not in ALLOWED_MODULES and any(_private(p) for p in module.split(".") if p):
                found.append(f"line {node.lineno}: from {module} import ...")
            found += [f"line {node.lineno}: from {module} import {a.name}" for a in node.names if _private(a.name)]
        elif isinstance(node, ast.Import):
            found += [
                f"line {node.lineno}: import {a.name}"
                for a in node.names
                if a.name not in ALLOWED_MODULES and any(_private(p) for p in a.name.split("."))
            ]
    return found


def test_the_check_sees_each_form_of_private_import():
    source = (
        "from cdc_sync.orchestration.dag_factory import _s3, build_pipeline_dag\n"
        "import cdc_sync._hidden\nfrom cdc_sync._hidden import thing\nfrom ._near import x\n"
        "from __future__ import annotations\nfrom cdc_sync._compat import AirflowFailException\n"
    )
    assert private_imports(source) == [
        "line 1: from cdc_sync.orchestration.dag_factory import _s3",
        "line 2: import cdc_sync._hidden",
        "line 3: from cdc_sync._hidden import ...",
        "line 4: from ._near import ...",
    ]


def test_no_module_imports_a_private_name_from_another_module():
    offences = {
        str(path.relative_to(REPO)): found
        for root in ROOTS
        for path in sorted(root.rglob("*.py"))
        if (found := private_imports(path.read_text(encoding="utf-8")))
    }
    assert offences == {}, "make the name public (no leading underscore) where another module needs it"
