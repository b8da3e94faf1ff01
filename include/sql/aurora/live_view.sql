CREATE OR REPLACE VIEW {{ database | my_ident }}.{{ view | my_ident }} AS
SELECT {% for c in columns %}{{ c | my_ident }}, {% endfor %}_cdc_position, _cdc_commit_ts, _cdc_loaded_at
FROM {{ database | my_ident }}.{{ table | my_ident }}
WHERE _cdc_deleted = 0
