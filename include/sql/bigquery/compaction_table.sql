-- One row per step of a compaction of one table: 'intent' before it reads anything, 'done'
-- once its MERGE committed. The newest 'done' watermark is what the latest-state view reads
-- the changelog from; the newest watermark of either kind is what a load must stamp after.
CREATE TABLE IF NOT EXISTS {{ bq_table(project, dataset, table) }} (
  pipeline STRING NOT NULL,
  table_name STRING NOT NULL,
  compaction_id STRING NOT NULL,
  phase STRING NOT NULL,
  watermark TIMESTAMP NOT NULL,
  merged_rows INT64,
  recorded_at TIMESTAMP NOT NULL
)
CLUSTER BY pipeline, table_name
