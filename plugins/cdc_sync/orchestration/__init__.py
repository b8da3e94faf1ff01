"""The Airflow-facing side: the DAG factory, the sensor and its trigger, the connection hooks."""
