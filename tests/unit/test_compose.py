"""docker-compose.yaml is valid Compose and wires Airflow to the stand-ins the DAGs use."""

from __future__ import annotations

import json

import yaml
from jsonschema import Draft7Validator

from tools.local_stack import REPO


def test_compose_file_matches_the_compose_specification():
    schema = json.loads((REPO / "tests" / "fixtures" / "compose-spec.json").read_text())
    document = yaml.safe_load((REPO / "docker-compose.yaml").read_text())
    errors = sorted(Draft7Validator(schema).iter_errors(document), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]
    services = document["services"]
    assert {
        "airflow-scheduler",
        "airflow-triggerer",
        "airflow-dag-processor",
        "airflow-apiserver",
        "postgres",
        "mysql",
        "moto",
        "bigquery",
    } <= set(services)
    env = services["airflow-scheduler"]["environment"]
    assert "moto:5000" in env["AIRFLOW_CONN_AWS_DEFAULT"]
    assert "bigquery:9050" in env["AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT"]
    assert "./dags:/opt/airflow/dags" in services["airflow-scheduler"]["volumes"]
