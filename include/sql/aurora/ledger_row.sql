-- One ledger row by its key: the object it names and its rows.
SELECT object_key, row_count FROM {{ database | my_ident }}.{{ ledger | my_ident }}
WHERE pipeline = %s AND table_name = %s AND object_hash = %s AND chunk = %s
