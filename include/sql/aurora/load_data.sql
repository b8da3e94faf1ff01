-- The character set is stated: LOAD DATA would read the file in the database's default.
-- The file holds per row only what varies: the data, the commit time in µs (NULL: none),
-- the row number, the delete flag. The position is built here as changes.py builds it,
-- phase|commit µs (20 digits)|object|row (12 digits); what is the same for every row (the
-- phase, the object's name, the load time) is set here, which keeps the file, and the
-- load, small. The state table reads the commit time from the position.
LOAD DATA {% if method == "aurora_s3" %}FROM S3 FILE {{ source | my_string }}{% else %}LOCAL INFILE {{ source | my_string }}{% endif %}
INTO TABLE {{ database | my_ident }}.{{ stage | my_ident }}
CHARACTER SET utf8mb4
FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '"' ESCAPED BY '\\'
LINES TERMINATED BY '\n'
({% for c in columns %}{{ ("@" ~ c) if c in hex_columns else (c | my_ident) }}, {% endfor %}@cdc_us, @cdc_row, _cdc_deleted)
SET
{%- for c in hex_columns %}
  {{ c | my_ident }} = UNHEX({{ "@" ~ c }}),
{%- endfor %}
  _cdc_position = CONCAT({{ phase | my_string }}, '|', LPAD(IFNULL(@cdc_us, 0), 20, '0'), '|', {{ position_name | my_string }}, '|', LPAD(@cdc_row, 12, '0')),
{%- if stored_commit_ts %}
  _cdc_commit_ts = IF(IFNULL(@cdc_us, 0) = 0, NULL, TIMESTAMPADD(MICROSECOND, @cdc_us, TIMESTAMP '1970-01-01 00:00:00')),  {#- a state table of an earlier version #}
{%- endif %}
  _cdc_loaded_at = UTC_TIMESTAMP(6)
