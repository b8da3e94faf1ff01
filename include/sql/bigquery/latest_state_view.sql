-- Latest state of {{ changelog }}: one row per primary key, the change with the highest
-- position wins, deletes are dropped. The position orders full load before CDC, then
-- commit time, object key and row, so late, out-of-order and repeated files give the
-- same result.
CREATE OR REPLACE VIEW {{ bq_table(project, dataset, view) }} AS
SELECT * EXCEPT (_cdc_op, _cdc_row)
FROM (
  SELECT *
  FROM {{ bq_table(project, dataset, changelog) }}
  WHERE TRUE
  QUALIFY ROW_NUMBER() OVER (
    PARTITION BY {% for column in primary_key %}{{ column | bq_ident }}{{ ", " if not loop.last }}{% endfor %}
    ORDER BY _cdc_position DESC
  ) = 1
)
WHERE _cdc_op != 'D'
