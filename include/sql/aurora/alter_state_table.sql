-- Every change a file needs of {{ table }}, in one statement: the table takes all of them
-- or, refused (too many columns, a row too large), stays as it was.
ALTER TABLE {{ database | my_ident }}.{{ table | my_ident }}
{%- for name, type in widened %}
  MODIFY COLUMN {{ name | my_ident }} {{ type }} {{ "NOT NULL" if name in primary_key else "NULL" }}{{ "," if not loop.last or added }}
{%- endfor %}
{%- for name, type in added %}
  ADD COLUMN {{ name | my_ident }} {{ type }} NULL{{ "," if not loop.last }}
{%- endfor %}
