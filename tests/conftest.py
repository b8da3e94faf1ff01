"""Shared fixtures: the local stack (real servers on loopback) and an Airflow home.

Airflow reads its settings when first imported, so the environment is set here, before
any test module imports it: a throwaway AIRFLOW_HOME with a SQLite metadata database.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="cdc-sync-airflow-"))
os.environ.update(
    {
        "AIRFLOW_HOME": str(_AIRFLOW_HOME),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_AIRFLOW_HOME / 'airflow.db'}",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "CDC_SYNC_SQL_DIR": str(REPO / "include" / "sql"),
    }
)


@pytest.fixture(scope="session")
def stack():
    """moto server + BigQuery emulator on free ports, MariaDB checked; stopped at the end."""
    from tools.local_stack import LocalStack

    with LocalStack.start() as local:
        saved = {k: os.environ.get(k) for k in local.airflow_env()}
        os.environ.update(local.airflow_env())
        yield local
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="session")
def airflow_db():
    """A migrated SQLite metadata database for dag.test()."""
    result = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], capture_output=True, text=True, env=os.environ.copy()
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return _AIRFLOW_HOME


@pytest.fixture
def unique_name():
    """A short unique suffix for buckets, datasets and databases of one test."""
    return uuid.uuid4().hex[:8]


@pytest.fixture(scope="session")
def dms_fixture() -> Path:
    """A full-load file written by AWS DMS itself (see tests/fixtures/README.md)."""
    return REPO / "tests" / "fixtures" / "dms" / "dms_test_table_LOAD00000001.parquet"
