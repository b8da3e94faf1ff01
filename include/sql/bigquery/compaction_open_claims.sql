-- Load jobs that claimed an object of one table that no load has appended yet: each may
-- still append rows stamped before a compaction's watermark, so the compaction settles them.
SELECT DISTINCT claim.job_id
FROM {{ bq_table(project, dataset, ledger) }} AS claim
LEFT JOIN (
  SELECT DISTINCT object_key, etag
  FROM {{ bq_table(project, dataset, ledger) }}
  WHERE pipeline = @pipeline AND table_name = @table_name AND status = 'loaded'
) AS loaded
  ON loaded.object_key = claim.object_key AND loaded.etag = claim.etag
WHERE claim.pipeline = @pipeline
  AND claim.table_name = @table_name
  AND claim.status = 'pending'
  AND claim.job_id IS NOT NULL
  AND loaded.object_key IS NULL
