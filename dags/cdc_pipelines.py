"""cdc-sync: one Airflow DAG per pipeline (and one reconciliation DAG where configured) declared in config/pipelines.yaml (see README).

Thin on purpose: reads the config (no network) and lets the library build the DAGs.
(Airflow's safe-mode discovery only parses files that mention both "airflow" and "dag".)
"""

from cdc_sync.config import default_config_path, load_pipelines
from cdc_sync.orchestration.dag_factory import build_pipeline_dag, build_reconcile_dag

_CONFIG = default_config_path()

for _pipeline in load_pipelines(_CONFIG):
    globals()[_pipeline.dag_id] = build_pipeline_dag(_pipeline, config_path=str(_CONFIG))
    if _pipeline.reconcile is not None:
        globals()[_pipeline.reconcile_dag_id] = build_reconcile_dag(_pipeline)
