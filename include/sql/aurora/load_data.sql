-- The character set is stated: LOAD DATA would read the file in the database's default.
LOAD DATA {% if method == "aurora_s3" %}FROM S3 FILE {{ source | my_string }}{% else %}LOCAL INFILE {{ source | my_string }}{% endif %}
INTO TABLE {{ database | my_ident }}.{{ stage | my_ident }}
CHARACTER SET utf8mb4
FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '"' ESCAPED BY '\\'
LINES TERMINATED BY '\n'
({% for c in columns %}{{ ("@" ~ c) if c in hex_columns else (c | my_ident) }}{{ ", " if not loop.last }}{% endfor %})
{%- if hex_columns %}
SET {% for c in hex_columns %}{{ c | my_ident }} = UNHEX({{ "@" ~ c }}){{ ", " if not loop.last }}{% endfor %}
{%- endif %}
