-- Every primary key of {{ source_table }} with its latest change; deletes stay as
-- tombstones (_cdc_deleted = 1) with their position, so an older insert that arrives
-- later cannot bring a deleted row back. Users query the view {{ view }}.
CREATE TABLE IF NOT EXISTS {{ database | my_ident }}.{{ table | my_ident }} (
{%- for name, type in columns %}
  {{ name | my_ident }} {{ type }}{{ " NOT NULL" if name in primary_key }},
{%- endfor %}
  _cdc_position VARCHAR(1024) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,  -- phase|commit µs|object|row
  _cdc_deleted TINYINT(1) NOT NULL,
  -- the commit time is the position's second part (µs, all zeros when the file has none):
  -- read from it, never loaded a second time
  _cdc_commit_ts DATETIME(6) AS (IF(SUBSTRING_INDEX(SUBSTRING_INDEX(_cdc_position, '|', 2), '|', -1) = '00000000000000000000', NULL, TIMESTAMPADD(MICROSECOND, CAST(SUBSTRING_INDEX(SUBSTRING_INDEX(_cdc_position, '|', 2), '|', -1) AS UNSIGNED), TIMESTAMP '1970-01-01 00:00:00'))) VIRTUAL,
  _cdc_loaded_at DATETIME(6) NOT NULL,
  PRIMARY KEY ({% for c in primary_key %}{{ c | my_ident }}{{ ", " if not loop.last }}{% endfor %})
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin
