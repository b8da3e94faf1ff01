-- Append a delivered Firehose object to the table. It is in the backslash_escaped CSV
-- dialect (firehose/dialects.py): as the transform Lambda writes it, or converted to it by
-- the worker from RFC 4180 (source.csv_dialect). An unquoted NULL would read as NULL: the
-- dialect quotes every value.
-- LOAD DATA into InnoDB is transactional: it commits with the ledger row or not at all.
-- IGNORE: a record whose unique key is already in the table (a repeated delivery) is
-- skipped with a warning, and every other problem is a warning too (as LOCAL always does),
-- which the loader turns into a refusal of the object.
LOAD DATA {% if method == "aurora_s3" %}FROM S3 FILE {{ source | my_string }}{% else %}LOCAL INFILE {{ source | my_string }}{% endif %} IGNORE
INTO TABLE {{ database | my_ident }}.{{ table | my_ident }}
CHARACTER SET utf8mb4
FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '"' ESCAPED BY '\\'
LINES TERMINATED BY '\n'
({% for c in columns %}{{ c | my_ident }}{{ ", " if not loop.last }}{% endfor %})
