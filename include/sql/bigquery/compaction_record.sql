INSERT INTO {{ bq_table(project, dataset, table) }}
  (pipeline, table_name, compaction_id, phase, watermark, merged_rows, recorded_at)
VALUES (@pipeline, @table_name, @compaction_id, @phase, @watermark, @merged_rows, CURRENT_TIMESTAMP())
