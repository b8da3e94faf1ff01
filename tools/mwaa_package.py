"""Build what Amazon MWAA takes from its S3 bucket into build/mwaa/ (`make mwaa-package`).

    python tools/mwaa_package.py [--config pipelines.yaml] [--out build/mwaa]

    build/mwaa/dags/              the environment's DAGs folder (s3://<bucket>/dags/):
        cdc_pipelines.py            the DAG file
        config/pipelines.yaml       where cdc_sync.config.default_config_path() looks on MWAA
        include/sql/…               the SQL templates the library renders at run time (cdc_sync.sql.sql_dir)
        .airflowignore              keeps the DAG processor out of config/ and include/
    build/mwaa/plugins.zip        `cdc_sync` at the zip root plus the `.airflowignore` that keeps
                                  it out of Airflow's plugin loader; MWAA unzips it into
                                  /usr/local/airflow/plugins, which Airflow puts on sys.path
    build/mwaa/requirements.txt   MWAA's `--constraint` line for Airflow 3.0.6 / Python 3.12 and
                                  the runtime needs of requirements.txt that MWAA does not install

No startup.sh: the library needs no system package and no environment variable on MWAA (the
config and templates are found next to the DAG file). The config is validated first, so a
package is never built around a pipelines file the DAG file would refuse. Zip entries carry a
fixed date, so an unchanged library gives a byte-identical plugins.zip (and no new S3 version).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import zipfile
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "plugins"))

from cdc_sync.config import load_pipelines  # noqa: E402  (the plugins folder is put on sys.path just above)

AIRFLOW_VERSION = "3.0.6"  # MWAA's first Airflow 3 release
PYTHON_VERSION = "3.12"  # the Python of MWAA's Airflow 3.0.6 image
CONSTRAINT_URL = "https://raw.githubusercontent.com/apache/airflow/constraints-{airflow}/constraints-{python}.txt"

# Installed by MWAA's Airflow 3.0.6 image before requirements.txt (its Python-Packages-BOM:
# amazon 9.12.0 with aiobotocore, common-sql 1.27.5, standard 1.6.0). Listing them again would
# only repin them against the constraints; MWAA's own copies are the ones that run.
MWAA_PREINSTALLED = frozenset(
    {"apache-airflow-providers-amazon", "apache-airflow-providers-common-sql", "apache-airflow-providers-standard"}
)

DAGS_IGNORE = """\
# Data of the DAG file, not DAGs: the DAG processor need not walk these folders.
config/
include/
"""
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip entry can carry: reproducible archives


def runtime_requirements(requirements: Path = REPO / "requirements.txt") -> list[str]:
    """The lines of `requirements` MWAA needs installed: comments kept, preinstalled providers dropped."""
    kept = []
    for line in requirements.read_text(encoding="utf-8").splitlines():
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        if text.startswith("-"):
            raise SystemExit(f"{requirements}: {text!r}: only plain requirements go into MWAA's requirements.txt")
        if canonicalize_name(Requirement(text).name) in MWAA_PREINSTALLED:
            continue
        kept.append(line.strip())
    return kept


def requirements_text(airflow: str = AIRFLOW_VERSION, python: str = PYTHON_VERSION) -> str:
    constraint = CONSTRAINT_URL.format(airflow=airflow, python=python)
    return "\n".join(
        [
            f'--constraint "{constraint}"',
            "# cdc-sync's runtime needs (tools/mwaa_package.py, from requirements.txt). MWAA installs",
            "# " + ", ".join(sorted(MWAA_PREINSTALLED)) + " itself.",
            *runtime_requirements(),
            "",
        ]
    )


def _library_files() -> list[Path]:
    root = REPO / "plugins"
    files = [
        p
        for p in (root / "cdc_sync").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo")
    ]
    return [root / ".airflowignore", *sorted(files)]


def write_plugins_zip(target: Path) -> list[str]:
    """plugins.zip with `.airflowignore` and `cdc_sync/` at its root; returns the entry names."""
    root = REPO / "plugins"
    names = []
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in _library_files():
            name = path.relative_to(root).as_posix()
            entry = zipfile.ZipInfo(name, ZIP_DATE)
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = 0o644 << 16
            archive.writestr(entry, path.read_bytes())
            names.append(name)
    return names


def write_dags_folder(target: Path, config: Path) -> None:
    target.mkdir(parents=True)
    for dag_file in sorted((REPO / "dags").glob("*.py")):
        shutil.copy2(dag_file, target / dag_file.name)
    (target / "config").mkdir()
    shutil.copy2(config, target / "config" / "pipelines.yaml")
    shutil.copytree(REPO / "include" / "sql", target / "include" / "sql", ignore=shutil.ignore_patterns("__pycache__"))
    (target / ".airflowignore").write_text(DAGS_IGNORE, encoding="utf-8")


def build(out: Path, config: Path) -> dict:
    """Write the package into `out` (emptied first); returns what it wrote."""
    pipelines = load_pipelines(config)  # a ConfigError here names the file, pipeline and field
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    write_dags_folder(out / "dags", config)
    entries = write_plugins_zip(out / "plugins.zip")
    (out / "requirements.txt").write_text(requirements_text(), encoding="utf-8")
    return {"pipelines": [p.name for p in pipelines], "plugins_zip_entries": len(entries)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO / "config" / "pipelines.yaml", help="the pipelines file")
    parser.add_argument("--out", type=Path, default=REPO / "build" / "mwaa", help="output folder (emptied first)")
    args = parser.parse_args(argv)
    summary = build(args.out, args.config)
    print(f"MWAA package in {args.out} for pipeline(s) {', '.join(summary['pipelines'])}:")
    for path in sorted(p for p in args.out.rglob("*") if p.is_file()):
        print(f"  {path.relative_to(args.out)}  ({path.stat().st_size:,} bytes)")
    print(
        "Upload dags/ to s3://<bucket>/dags/, plugins.zip and requirements.txt to the bucket, then set their "
        "object versions on the environment (docs/mwaa.md)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
