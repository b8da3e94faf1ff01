-- Drop whole changelog partitions that are both compacted (stamped before the done
-- watermark's day) and older than the retention: never a row the state does not hold.
DELETE FROM {{ bq_table(project, dataset, changelog) }}
WHERE _cdc_loaded_at < @before
