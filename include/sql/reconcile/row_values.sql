-- The canonical text of every compared column, for the keys that differ: names the columns.
SELECT {% for c in key_columns %}{{ c }}, {% endfor %}{% for v in values %}{{ v }} AS v{{ loop.index0 }}{{ ", " if not loop.last }}{% endfor %}
FROM {{ relation }}
WHERE {{ where }}
