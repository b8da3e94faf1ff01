"""Capture from a DynamoDB stream: shards read from checkpoints, Lambda-style filter
criteria, typed attribute values unmarshalled into declared columns, DMS-format change
files written to the landing prefix (so the DMS loaders, ledgers and views apply them)."""
