-- Per-connection staging: no keys, so a chunk may hold several changes of one key.
CREATE TEMPORARY TABLE {{ database | my_ident }}.{{ stage | my_ident }}
SELECT * FROM {{ database | my_ident }}.{{ table | my_ident }} WHERE FALSE
