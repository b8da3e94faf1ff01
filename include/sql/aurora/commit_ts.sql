{#- The commit time written in a position ("phase|commit µs|…", 20 digits, all zeros when the
    file has no commit time), as DATETIME(6) UTC. The state table derives _cdc_commit_ts
    from _cdc_position this way instead of loading the same time a second time as text. -#}
{%- macro commit_ts_from(position) -%}
IF(SUBSTRING_INDEX(SUBSTRING_INDEX({{ position }}, '|', 2), '|', -1) = '00000000000000000000', NULL, TIMESTAMPADD(MICROSECOND, CAST(SUBSTRING_INDEX(SUBSTRING_INDEX({{ position }}, '|', 2), '|', -1) AS UNSIGNED), TIMESTAMP '1970-01-01 00:00:00'))
{%- endmacro %}
