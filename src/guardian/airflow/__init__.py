"""The only package that imports airflow: DAG defaults, callbacks, operators, plugin.

Everything here imports through ``airflow.providers.common.compat`` so the same code runs on
Airflow 3.x and 2.11. Modules imported by DAG files at parse time stay light: heavy imports
happen inside functions, when a task runs.
"""
