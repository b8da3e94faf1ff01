-- Which chunks of which landed objects this database has applied (status 'applied',
-- written in the same transaction as the rows: a chunk is applied and recorded, or
-- neither), and per object the outcome (chunk -1: 'loaded' or 'quarantined' with reason).
-- A merge chunk is the rows first_row .. first_row + row_count - 1 of its object, and its
-- chunk is its first row (NULL first_row: a chunk an earlier version numbered 0, 1, ...).
-- etag is the object's ETag as listed (for a single-part upload the MD5 of its bytes).
CREATE TABLE IF NOT EXISTS {{ database | my_ident }}.{{ ledger | my_ident }} (
  pipeline VARCHAR(64) NOT NULL,
  table_name VARCHAR(200) NOT NULL,
  object_hash CHAR(64) CHARACTER SET ascii NOT NULL,
  chunk INT NOT NULL,
  first_row BIGINT NULL,
  object_key VARCHAR(1024) NOT NULL,
  etag VARCHAR(128) NOT NULL,
  status VARCHAR(16) NOT NULL,
  row_count BIGINT NOT NULL,
  reason TEXT NULL,
  loaded_at DATETIME(6) NOT NULL,
  PRIMARY KEY (pipeline, table_name, object_hash, chunk),
  KEY by_content (pipeline, table_name, etag)  -- repeated Firehose deliveries: same bytes, new name
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin
