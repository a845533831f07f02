"""Airflow glue shared by the DAG files (ignored by the DAG processor via .airflowignore)."""
