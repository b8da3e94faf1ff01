-- A per-connection copy of the loaded columns of {{ table }}: their types and NOT NULLs,
-- none of its keys, so LOAD DATA into it only ever refuses bad values, never repeated ones.
CREATE TEMPORARY TABLE {{ database | my_ident }}.{{ stage | my_ident }} AS
SELECT {% for c in columns %}{{ c | my_ident }}{{ ", " if not loop.last }}{% endfor %}
FROM {{ database | my_ident }}.{{ table | my_ident }} LIMIT 0
