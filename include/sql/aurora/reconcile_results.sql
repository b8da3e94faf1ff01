-- One row per (run, table, target) comparison: what reconciliation found and how long it took.
CREATE TABLE IF NOT EXISTS {{ database | my_ident }}.{{ table | my_ident }} (
  run_id VARCHAR(250) NOT NULL,
  checked_at DATETIME(6) NOT NULL,
  pipeline VARCHAR(64) NOT NULL,
  table_name VARCHAR(200) NOT NULL,
  target VARCHAR(64) NOT NULL,
  status VARCHAR(16) NOT NULL,
  source_rows BIGINT NOT NULL,
  target_rows BIGINT NOT NULL,
  missing_rows BIGINT NOT NULL,
  extra_rows BIGINT NOT NULL,
  changed_rows BIGINT NOT NULL,
  lag_rows BIGINT NOT NULL,
  sample_keys JSON NOT NULL,
  watermark VARCHAR(40) NULL,
  seconds DOUBLE NOT NULL,
  detail JSON NOT NULL,
  PRIMARY KEY (pipeline, table_name, target, checked_at),
  KEY run (run_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin
