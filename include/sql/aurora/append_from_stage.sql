-- The staged records into {{ table }}; a record whose unique key is already there (a
-- repeated Firehose delivery) is skipped with warning 1062, which the loader checks is the
-- only kind it got.
INSERT IGNORE INTO {{ database | my_ident }}.{{ table | my_ident }}
  ({% for c in columns %}{{ c | my_ident }}{{ ", " if not loop.last }}{% endfor %})
SELECT {% for c in columns %}{{ c | my_ident }}{{ ", " if not loop.last }}{% endfor %}
FROM {{ database | my_ident }}.{{ stage | my_ident }}
