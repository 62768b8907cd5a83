#!/usr/bin/env sh
# Airflow as `make airflow` set it up, from any folder: its own environment first on PATH (the
# standalone command starts `airflow` subprocesses by name), its home and SQLite in the
# repository's .airflow/, this folder's DAGs. Arguments go to the airflow command.
repo=$(cd "$(dirname "$0")/.." && pwd)
export PATH="$repo/.venv-airflow/bin:$PATH"
export AIRFLOW_HOME="${AIRFLOW_HOME:-$repo/.airflow}"
export AIRFLOW__CORE__DAGS_FOLDER="${AIRFLOW__CORE__DAGS_FOLDER:-$repo/dags}"
export AIRFLOW__CORE__LOAD_EXAMPLES="${AIRFLOW__CORE__LOAD_EXAMPLES:-False}"
exec airflow "$@"
