-- An object's outcome (chunk -1): 'loaded' with its rows, or 'quarantined' with the reason.
REPLACE INTO {{ database | my_ident }}.{{ ledger | my_ident }}
  (pipeline, table_name, object_hash, chunk, object_key, etag, status, row_count, reason, loaded_at)
VALUES (%s, %s, %s, -1, %s, %s, %s, %s, %s, UTC_TIMESTAMP(6))
