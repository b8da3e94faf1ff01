-- Apply a staged chunk: a change wins only over an older position, so the same files
-- (and the rows of one chunk, in whatever order the server takes them)
-- applied in any order converge. _cdc_position is assigned last: the other assignments
-- compare against the stored (old) position.
INSERT INTO {{ database | my_ident }}.{{ table | my_ident }}
  ({% for c in columns %}{{ c | my_ident }}{{ ", " if not loop.last }}{% endfor %})
SELECT {% for c in columns %}{{ c | my_ident }}{{ ", " if not loop.last }}{% endfor %}
FROM {{ database | my_ident }}.{{ stage | my_ident }}
ON DUPLICATE KEY UPDATE
{%- set t = (database | my_ident) ~ "." ~ (table | my_ident) %}
{%- for c in columns if c not in primary_key and c != "_cdc_position" %}
  {{ t }}.{{ c | my_ident }} = IF(VALUES(_cdc_position) > {{ t }}._cdc_position, VALUES({{ c | my_ident }}), {{ t }}.{{ c | my_ident }}),
{%- endfor %}
  {{ t }}._cdc_position = GREATEST({{ t }}._cdc_position, VALUES(_cdc_position))
