-- Bounds of the leading key column: the key space that buckets divide (index ends only).
SELECT MIN({{ column }}) AS low, MAX({{ column }}) AS high FROM {{ relation }}
