{% from "aurora/commit_ts.sql" import commit_ts_from -%}
-- The character set is stated: LOAD DATA would read the file in the database's default.
-- What is the same for every row of the object (its name, the load time) is not in the
-- file: it is set here, which keeps the file, and the load, small. So is the commit time
-- as text: the state table reads it from the position (commit_ts.sql).
LOAD DATA {% if method == "aurora_s3" %}FROM S3 FILE {{ source | my_string }}{% else %}LOCAL INFILE {{ source | my_string }}{% endif %}
INTO TABLE {{ database | my_ident }}.{{ stage | my_ident }}
CHARACTER SET utf8mb4
FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '"' ESCAPED BY '\\'
LINES TERMINATED BY '\n'
({% for c in columns %}{{ ("@" ~ c) if c in hex_columns else (c | my_ident) }}, {% endfor %}@cdc_head, @cdc_row, _cdc_deleted)
SET
{%- for c in hex_columns %}
  {{ c | my_ident }} = UNHEX({{ "@" ~ c }}),
{%- endfor %}
  _cdc_position = CONCAT(@cdc_head, '|', {{ position_name | my_string }}, '|', LPAD(@cdc_row, 12, '0')),
{%- if stored_commit_ts %}
  _cdc_commit_ts = {{ commit_ts_from('@cdc_head') }},  {#- a state table made before it was derived #}
{%- endif %}
  _cdc_loaded_at = UTC_TIMESTAMP(6)
