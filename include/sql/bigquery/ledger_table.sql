-- One row per state change of a landed object; the current state of (object_key, etag)
-- is its 'loaded' row if any, else its newest row. Append-only: concurrent loads of
-- different tables never contend on UPDATEs.
CREATE TABLE IF NOT EXISTS {{ bq_table(project, dataset, ledger) }} (
  pipeline STRING NOT NULL,
  table_name STRING NOT NULL,
  object_key STRING NOT NULL,
  etag STRING NOT NULL,
  status STRING NOT NULL,
  job_id STRING,
  row_count INT64,
  reason STRING,
  recorded_at TIMESTAMP NOT NULL
)
CLUSTER BY pipeline, table_name, object_key
