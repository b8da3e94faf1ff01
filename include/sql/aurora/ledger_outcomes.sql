-- The outcome ('loaded' / 'quarantined') of each of `count` objects (by object_hash) that has one.
SELECT object_hash, status FROM {{ database | my_ident }}.{{ ledger | my_ident }}
WHERE pipeline = %s AND table_name = %s AND chunk = -1
  AND object_hash IN ({% for _ in range(count) %}{{ ", " if not loop.first }}%s{% endfor %})
