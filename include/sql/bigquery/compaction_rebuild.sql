-- The other way to compact (measured against MERGE in bench/bench_compaction.py): rewrite
-- the whole state table from state ∪ the new changelog rows. Only a rebuild from an empty
-- state (`rebuild`) uses it: two of them running at once could put an older state back.
CREATE OR REPLACE TABLE {{ bq_table(project, dataset, state) }}
{%- if clustering %} CLUSTER BY {% for column in clustering %}{{ column | bq_ident }}{{ ", " if not loop.last }}{% endfor %}{% endif %} AS
SELECT * FROM (
  {%- if from_state %}
  SELECT {% for column in columns %}{{ column | bq_ident }}{{ ", " if not loop.last }}{% endfor %}
  FROM {{ bq_table(project, dataset, state) }}
  UNION ALL
  {%- endif %}
  SELECT {% for column in columns %}{{ column | bq_ident }}{{ ", " if not loop.last }}{% endfor %}
  FROM {{ bq_table(project, dataset, changelog) }}
  WHERE _cdc_loaded_at < @high{% if with_low %} AND _cdc_loaded_at >= @low{% endif %}
)
WHERE TRUE
QUALIFY ROW_NUMBER() OVER (
  PARTITION BY {% for column in primary_key %}{{ column | bq_ident }}{{ ", " if not loop.last }}{% endfor %}
  ORDER BY _cdc_position DESC
) = 1
