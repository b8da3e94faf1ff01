"""Aurora MySQL / MariaDB audit log as a trigger: CloudWatch Logs → Kinesis records decoded,
audit lines parsed, the tables each write touched found, syncs of those tables triggered."""
