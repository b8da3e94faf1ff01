-- Apply the changelog rows stamped in [@low, @high) to the state table: per key the change
-- with the highest position, and only where it is higher than what the state holds. Run
-- twice, or beside another compaction, it changes nothing more: the position guard makes
-- the state the max-position change per key of every row ever applied, whatever the order.
MERGE {{ bq_table(project, dataset, state) }} AS target
USING (
  SELECT {% for column in columns %}{{ column | bq_ident }}{{ ", " if not loop.last }}{% endfor %}
  FROM {{ bq_table(project, dataset, changelog) }}
  WHERE _cdc_loaded_at < @high{% if with_low %} AND _cdc_loaded_at >= @low{% endif %}
  QUALIFY ROW_NUMBER() OVER (
    PARTITION BY {% for column in primary_key %}{{ column | bq_ident }}{{ ", " if not loop.last }}{% endfor %}
    ORDER BY _cdc_position DESC
  ) = 1
) AS change
ON {% for column in primary_key %}target.{{ column | bq_ident }} = change.{{ column | bq_ident }}{{ " AND " if not loop.last }}{% endfor %}
WHEN MATCHED AND change._cdc_position > target._cdc_position THEN
  UPDATE SET {% for column in columns %}{{ column | bq_ident }} = change.{{ column | bq_ident }}{{ ", " if not loop.last }}{% endfor %}
WHEN NOT MATCHED THEN
  INSERT ({% for column in columns %}{{ column | bq_ident }}{{ ", " if not loop.last }}{% endfor %})
  VALUES ({% for column in columns %}change.{{ column | bq_ident }}{{ ", " if not loop.last }}{% endfor %})
