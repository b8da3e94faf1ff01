-- Current state of the given objects of one table: pending, loaded or quarantined.
SELECT object_key, etag, status, job_id, row_count, reason
FROM {{ bq_table(project, dataset, ledger) }}
WHERE pipeline = @pipeline
  AND table_name = @table_name
  AND object_key IN UNNEST(@keys)
QUALIFY ROW_NUMBER() OVER (
  PARTITION BY object_key, etag
  ORDER BY IF(status = 'loaded', 1, 0) DESC, recorded_at DESC
) = 1
