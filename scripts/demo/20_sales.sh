#!/usr/bin/env bash
# Sales extract on the embedded defaults (DuckDB warehouse, local folder storage): demo data,
# a cost estimate, then the DAG through Airflow for one country x brand x quarter, a re-run of
# the same run id (replaced atomically), and a request the cost guard refuses.
set -euo pipefail
export COLUMNS="${COLUMNS:-160}"
CONF='{"start_date": "2026-01-01", "end_date": "2026-03-31", "countries": ["TH"], "brands": ["X"], "granularity": "entry", "format": "parquet"}'

say "Sales: guardian sales demo-data (seeded LS Central-style sales entries in DuckDB)"
guardian sales demo-data

say "Sales: guardian sales estimate (a dry run: bytes the query would process vs the limit)"
guardian sales estimate --from 2026-01-01 --to 2026-03-31 --country TH --brand X

say "Sales: airflow dags test bigquery_sales_query (TH x X x 2026-Q1, Parquet)"
if ! airflow dags test bigquery_sales_query -c "$CONF" >"$DEMO_DIR/sales-dag.log" 2>&1; then
  tail -40 "$DEMO_DIR/sales-dag.log"
  exit 1
fi
grep -E "^Sales extract |^rows: |^bytes processed: |^manifest: " "$DEMO_DIR/sales-dag.log" | sed 's/^.*INFO - //' | sort -u || true
RUN_ID=$(guardian sales runs --json | python -c 'import json,sys; print(json.load(sys.stdin)[0]["run_id"])')
guardian sales runs -n 3

say "Sales: the export of $RUN_ID (manifest written last)"
EXPORT_DIR=$(python - "$RUN_ID" <<'PY'
import json, sys
from guardian.sales.runs import get_run
from guardian.settings import load_settings
from guardian.store import get_store

run = get_run(get_store(load_settings()), sys.argv[1])
manifest_path = run["output_uri"].removeprefix("file://")
manifest = json.load(open(manifest_path))
print(
    f"manifest: rows={manifest['rows']} bytes={manifest['bytes']} format={manifest['format']}/{manifest['compression']} "
    f"query_hash={manifest['query_hash'][:16]}",
    file=sys.stderr,
)
for f in manifest["files"]:
    print(f"  {f['path']}  rows={f['rows']} bytes={f['bytes']} md5={f['md5']}", file=sys.stderr)
print(manifest_path.rsplit("/", 1)[0])
PY
)
find "$EXPORT_DIR" -type f | sed "s|$GUARDIAN_DATA_DIR/||" | sort
echo "quality checks:"
guardian sales show "$RUN_ID" | python -c '
import json, sys
for r in json.load(sys.stdin)["quality_results"]:
    print("  " + r["check_name"] + ": " + ("pass" if r["passed"] else "FAIL") + " - " + r["message"])
'

say "Sales: guardian sales run with the same run id as CSV (replaces its own export atomically)"
guardian sales run --from 2026-01-01 --to 2026-03-31 --country TH --brand X --format csv --run-id "$RUN_ID" | tail -4
find "$EXPORT_DIR" -type f | sed "s|$GUARDIAN_DATA_DIR/||" | sort

say "Sales: a request over the cost limit is refused before any query runs"
if GUARDIAN_SALES__MAX_BYTES_BILLED=1000000 guardian sales run --from 2026-01-01 --to 2026-03-31 --country TH --brand X --run-id demo-too-expensive; then
  echo "expected the cost guard to refuse this run" >&2
  exit 1
fi
guardian sales runs -n 3
