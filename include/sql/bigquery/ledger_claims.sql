-- Every load job that has claimed one of the given objects of one table: its 'pending' rows.
-- A loader fences or waits on each other claim before its own job may append those objects.
SELECT DISTINCT object_key, etag, job_id, row_count
FROM {{ bq_table(project, dataset, ledger) }}
WHERE pipeline = @pipeline
  AND table_name = @table_name
  AND status = 'pending'
  AND job_id IS NOT NULL
  AND object_key IN UNNEST(@keys)
