INSERT INTO {{ database | my_ident }}.{{ table | my_ident }}
  (run_id, checked_at, pipeline, table_name, target, status, source_rows, target_rows, missing_rows, extra_rows,
   changed_rows, lag_rows, sample_keys, watermark, seconds, detail)
VALUES (%(run_id)s, %(checked_at)s, %(pipeline)s, %(table_name)s, %(target)s, %(status)s, %(source_rows)s,
        %(target_rows)s, %(missing_rows)s, %(extra_rows)s, %(changed_rows)s, %(lag_rows)s, %(sample_keys)s,
        %(watermark)s, %(seconds)s, %(detail)s)
