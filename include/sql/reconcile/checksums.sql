-- Row count and checksum (sum of row hashes) per bucket of the key space; one scan.
-- {{ relation }} is the table or view compared; {{ where }} restricts to the buckets
-- of the previous level that differed (TRUE at the first level).
SELECT {{ bucket }} AS bucket, COUNT(*) AS row_count, {{ checksum }} AS checksum
FROM {{ relation }}
WHERE {{ where }}
GROUP BY bucket
