-- A row written inside the transaction it records: a chunk 'applied' (chunk >= 0), or a
-- claim on an object's content ('content', chunk -2). A second one of the same key fails
-- (duplicate key), or waits until the first one's transaction ends.
INSERT INTO {{ database | my_ident }}.{{ ledger | my_ident }}
  (pipeline, table_name, object_hash, chunk, first_row, object_key, etag, status, row_count, loaded_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, UTC_TIMESTAMP(6))
