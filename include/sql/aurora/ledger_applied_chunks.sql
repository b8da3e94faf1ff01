-- The committed chunks of one object: chunk number (its first row, or its number for a
-- version that numbered chunks), first row (NULL then) and row count.
SELECT chunk, first_row, row_count FROM {{ database | my_ident }}.{{ ledger | my_ident }}
WHERE pipeline = %s AND table_name = %s AND object_hash = %s AND chunk >= 0 AND status = 'applied'
