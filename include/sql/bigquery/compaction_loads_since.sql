-- Load jobs of one table recorded after the last compaction: the cadence counts them.
SELECT COUNT(DISTINCT job_id) AS loads
FROM {{ bq_table(project, dataset, ledger) }}
WHERE pipeline = @pipeline
  AND table_name = @table_name
  AND status = 'loaded'
  AND recorded_at > @since
