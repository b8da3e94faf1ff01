-- A ledger made by a version that numbered chunks gets the column of a chunk's first row.
ALTER TABLE {{ database | my_ident }}.{{ ledger | my_ident }} ADD COLUMN first_row BIGINT NULL AFTER chunk
