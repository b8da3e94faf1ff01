-- Another object of the table loaded (with rows) whose ETag is the same: a repeated delivery.
SELECT object_key FROM {{ database | my_ident }}.{{ ledger | my_ident }}
WHERE pipeline = %s AND table_name = %s AND etag = %s
  AND chunk = -1 AND status = 'loaded' AND row_count > 0 AND object_key <> %s
LIMIT 1
