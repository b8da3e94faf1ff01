-- The row count of a chunk, known once its load ended.
UPDATE {{ database | my_ident }}.{{ ledger | my_ident }} SET row_count = %s
WHERE pipeline = %s AND table_name = %s AND object_hash = %s AND chunk = %s
