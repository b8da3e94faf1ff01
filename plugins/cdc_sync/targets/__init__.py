"""Where change data goes: one folder per target (Aurora MySQL, BigQuery) with its loader, ledger and schema; base.py is their contract."""
