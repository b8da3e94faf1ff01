-- Row count and checksum (sum of row hashes) per bucket of the key space; one scan.
-- {{ relation }} is the table or view compared; {{ where }} restricts to the buckets
-- of the previous level that differed (TRUE at the first level). In strong mode
-- ({{ digest }}) the checksum is a digest of the bucket's sorted row hashes, each computed once.
{% if digest -%}
SELECT bucket, COUNT(*) AS row_count, {{ checksum }} AS checksum
FROM (SELECT {{ bucket }} AS bucket, {{ row_hash }} AS h FROM {{ relation }} WHERE {{ where }}) AS hashed
GROUP BY bucket
{%- else -%}
SELECT {{ bucket }} AS bucket, COUNT(*) AS row_count, {{ checksum }} AS checksum
FROM {{ relation }}
WHERE {{ where }}
GROUP BY bucket
{%- endif %}
