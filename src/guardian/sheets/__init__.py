"""The sheets service (no airflow imports here)."""
