"""The looker service (no airflow imports here)."""
