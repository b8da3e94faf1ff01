-- Append a delivered Firehose object (CSV lines from the transform Lambda) to the table.
-- LOAD DATA into InnoDB is transactional: it commits with the ledger row or not at all.
LOAD DATA {% if method == "aurora_s3" %}FROM S3 FILE {{ source | my_string }}{% else %}LOCAL INFILE {{ source | my_string }}{% endif %}
INTO TABLE {{ database | my_ident }}.{{ table | my_ident }}
CHARACTER SET utf8mb4
FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '"' ESCAPED BY '\\'
LINES TERMINATED BY '\n'
({% for c in columns %}{{ c | my_ident }}{{ ", " if not loop.last }}{% endfor %})
