"""The sales service (no airflow imports here)."""
