-- Latest state of {{ changelog }}: one row per primary key, the change with the highest
-- position wins, deletes are dropped. The position orders full load before CDC, then
-- commit time, object key and row, so late, out-of-order and repeated files give the
-- same result.
{%- if state %}
-- Compacted: the state table holds the winner of every key loaded before {{ watermark }}
-- (deletes kept as tombstones), so only the changelog partitions from the watermark on
-- are read. A row in both (a compaction that has run but not yet moved this view) is the
-- same change at the same position: ranking them together gives the same winner.
{%- endif %}
CREATE OR REPLACE VIEW {{ bq_table(project, dataset, view) }} AS
SELECT * EXCEPT (_cdc_op, _cdc_row)
FROM (
  SELECT *
  FROM {% if state %}(
    SELECT {% for column in columns %}{{ column | bq_ident }}{{ ", " if not loop.last }}{% endfor %}
    FROM {{ bq_table(project, dataset, state) }}
    UNION ALL
    SELECT {% for column in columns %}{{ column | bq_ident }}{{ ", " if not loop.last }}{% endfor %}
    FROM {{ bq_table(project, dataset, changelog) }}
    WHERE _cdc_loaded_at >= TIMESTAMP '{{ watermark }}'
  ){% else %}{{ bq_table(project, dataset, changelog) }}{% endif %}
  WHERE TRUE
  QUALIFY ROW_NUMBER() OVER (
    PARTITION BY {% for column in primary_key %}{{ column | bq_ident }}{{ ", " if not loop.last }}{% endfor %}
    ORDER BY _cdc_position DESC
  ) = 1
)
WHERE _cdc_op != 'D'
