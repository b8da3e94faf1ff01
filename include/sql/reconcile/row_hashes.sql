-- Key and row hash of every row in the buckets that still differ (small segments only).
SELECT {% for c in key_columns %}{{ c }}, {% endfor %}{{ row_hash }} AS row_hash
FROM {{ relation }}
WHERE {{ where }}
