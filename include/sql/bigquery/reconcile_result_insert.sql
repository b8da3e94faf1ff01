INSERT INTO {{ bq_table(project, dataset, table) }}
  (run_id, checked_at, pipeline, table_name, target, status, source_rows, target_rows, missing_rows, extra_rows,
   changed_rows, lag_rows, sample_keys, watermark, seconds, detail)
VALUES (@run_id, @checked_at, @pipeline, @table_name, @target, @status, @source_rows, @target_rows, @missing_rows,
        @extra_rows, @changed_rows, @lag_rows, @sample_keys, @watermark, @seconds, @detail)
