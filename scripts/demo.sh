#!/usr/bin/env bash
# `make demo`: every service end to end on embedded defaults (SQLite store, local folder
# storage, DuckDB warehouse, Looker and Sheets sandboxes), through the CLI and through
# Airflow (`airflow dags test`). Each service adds a step in scripts/demo/NN_name.sh; the steps
# share the functions below. Re-running starts from a clean demo folder.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
export DEMO_DIR="${DEMO_DIR:-$REPO/var/demo}"
rm -rf "$DEMO_DIR"
mkdir -p "$DEMO_DIR"
export GUARDIAN_DATA_DIR="$DEMO_DIR/data"
export PATH="$REPO/.venv/bin:$PATH"
# Tables stay readable when the output is a file or a CI log rather than a terminal.
export COLUMNS="${COLUMNS:-160}"
export AIRFLOW_HOME="$DEMO_DIR/airflow"
export AIRFLOW__CORE__DAGS_FOLDER="$REPO/dags"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="sqlite:///$AIRFLOW_HOME/airflow.db"
export AIRFLOW__OPENLINEAGE__TRANSPORT='{"type": "file", "log_file_path": "'"$DEMO_DIR"'/openlineage.jsonl"}'

say() { printf '\n\033[1;34m== %s\033[0m\n' "$*"; }
export -f say

say "Guardian store, storage and integrations"
guardian db upgrade
guardian doctor
guardian audit record demo.start "demo:$(date -u +%Y%m%dT%H%M%SZ)" --note "make demo"

say "Airflow metadata database ($AIRFLOW_HOME)"
airflow db migrate >"$DEMO_DIR/airflow-migrate.log" 2>&1 || { tail -20 "$DEMO_DIR/airflow-migrate.log"; exit 1; }
echo "migrated"

shopt -s nullglob
for step in scripts/demo/[0-9]*.sh; do
  say "step $(basename "$step")"
  bash "$step"
done

say "Audit chain"
guardian audit verify
guardian audit tail -n 15
say "Demo finished: data in $DEMO_DIR"
