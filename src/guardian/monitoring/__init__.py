"""DAG health, threshold alerts and Prometheus metrics (no airflow imports here)."""
