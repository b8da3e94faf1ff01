CREATE OR REPLACE VIEW {{ database | my_ident }}.{{ view | my_ident }} AS
SELECT {% for c in columns %}{{ c | my_ident }}, {% endfor %}
{%- if commit_ts_column %}
  {#- DMS's TimestampColumnName, not stored: the commit time as DMS writes it #}
  {{ "DATE_FORMAT(_cdc_commit_ts, '%Y-%m-%d %H:%i:%s.%f')" if commit_ts_as_text else "_cdc_commit_ts" }} AS {{ commit_ts_column | my_ident }},
{%- endif %}
  _cdc_position, _cdc_commit_ts, _cdc_loaded_at
FROM {{ database | my_ident }}.{{ table | my_ident }}
WHERE _cdc_deleted = 0
