"""Where change data goes: one folder per target (Aurora MySQL, BigQuery), each with its loader and ledger."""
