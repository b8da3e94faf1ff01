INSERT INTO {{ bq_table(project, dataset, ledger) }}
  (pipeline, table_name, object_key, etag, status, job_id, row_count, reason, recorded_at)
SELECT @pipeline, @table_name, r.object_key, r.etag, r.status, r.job_id, r.row_count, r.reason, CURRENT_TIMESTAMP()
FROM UNNEST(@rows) AS r
