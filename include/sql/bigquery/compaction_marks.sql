-- Where the compactions of one table stand: the newest watermark any compaction announced,
-- the newest one a compaction finished, and when that one was recorded.
SELECT
  MAX(watermark) AS announced,
  MAX(IF(phase = 'done', watermark, NULL)) AS done,
  MAX(IF(phase = 'done', recorded_at, NULL)) AS done_at
FROM {{ bq_table(project, dataset, table) }}
WHERE pipeline = @pipeline AND table_name = @table_name
