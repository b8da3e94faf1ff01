"""Capture from a MySQL/MariaDB ROW binlog into DMS-format change files (python-mysql-replication)."""
