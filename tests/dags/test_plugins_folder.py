"""The library lives in the plugins folder but stays out of Airflow's plugin loader.

Airflow imports every `.py` file under the plugins folder as a top-level module named after
the file, looking for plugin classes; `plugins/.airflowignore` keeps `cdc_sync` out of that
walk (the DAGs import it as a package: the plugins folder is on sys.path). Checked with
Airflow's own loader in a fresh interpreter, on the repository's folder and on the folder
MWAA unpacks from the `plugins.zip` the README tells you to build.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LIBRARY_MODULES = sorted({p.stem for p in (REPO / "plugins" / "cdc_sync").rglob("*.py")} | {"cdc_sync"})

_PROBE = r"""
import json, sys, time
import airflow.plugins_manager as plugins_manager
from airflow import settings

before = set(sys.modules)
start = time.perf_counter()
plugins_manager.ensure_plugins_loaded()
elapsed = time.perf_counter() - start
imported = sorted(m for m in set(sys.modules) - before if "." not in m)
errors = plugins_manager.get_import_errors() if hasattr(plugins_manager, "get_import_errors") else {}
import cdc_sync.config  # what a DAG does: the plugins folder is on sys.path
print(json.dumps({"seconds": elapsed, "imported": imported, "errors": errors,
                  "library": cdc_sync.config.__file__, "folder": settings.PLUGINS_FOLDER}))
"""


def _load_plugins(folder: Path, tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(
        {
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW_HOME": str(tmp_path / "airflow-home"),
        }
    )
    result = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _plugins_zip_folder(tmp_path: Path) -> Path:
    """Build plugins.zip as the README says (`cd plugins && zip -r ../plugins.zip .airflowignore
    cdc_sync`) and unpack it as MWAA does."""
    archive = tmp_path / "plugins.zip"
    subprocess.run(
        ["zip", "-qr", str(archive), ".airflowignore", "cdc_sync", "-x", "*__pycache__*"],
        cwd=REPO / "plugins",
        check=True,
    )
    unpacked = tmp_path / "mwaa-plugins"
    with zipfile.ZipFile(archive) as zipped:
        zipped.extractall(unpacked)
    return unpacked


@pytest.mark.parametrize("where", ["repository", "plugins.zip"])
def test_airflows_plugin_loader_imports_nothing_of_the_library(where, tmp_path):
    folder = REPO / "plugins" if where == "repository" else _plugins_zip_folder(tmp_path)
    report = _load_plugins(folder, tmp_path)
    shadowing = sorted(set(report["imported"]) & set(LIBRARY_MODULES))
    assert shadowing == [], f"Airflow's plugin loader imported library files as top-level modules: {shadowing}"
    assert report["errors"] == {}
    assert report["seconds"] < 0.5, f"loading the plugins folder took {report['seconds']:.2f}s"
    assert Path(report["library"]).is_relative_to(folder)  # still importable from the plugins folder
