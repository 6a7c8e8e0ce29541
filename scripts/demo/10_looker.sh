#!/usr/bin/env bash
# Looker lifecycle on the Looker API sandbox: plan (dry run), the DAG in APPLY mode through
# Airflow (triggered by hand with skip_approval: the trigger is the approval), then restore one
# trashed and one purged dashboard and Look, and keep one of each.
set -euo pipefail

PORT=$(python -c 'from guardian.sandbox.serve import free_port; print(free_port())')
guardian sandbox looker --port "$PORT" >"$DEMO_DIR/looker-sandbox.log" 2>&1 &
SANDBOX_PID=$!
trap 'kill "$SANDBOX_PID" 2>/dev/null || true; wait "$SANDBOX_PID" 2>/dev/null || true' EXIT
python -c "from guardian.sandbox.serve import wait_for_port; wait_for_port('127.0.0.1', $PORT, 60)"

export LOOKERSDK_BASE_URL="http://127.0.0.1:$PORT"
export LOOKERSDK_CLIENT_ID=sandbox-id
export LOOKERSDK_CLIENT_SECRET=sandbox-secret
# The demo instance is small: 5 of 18 dashboards (and 2 of 8 Looks) to trash is above the default 20 % breaker.
export GUARDIAN_LOOKER__MAX_FRACTION=0.5
export GUARDIAN_LOOKER__PROTECTED_FOLDER_PATHS=Shared/Finance
echo "Looker sandbox (seeded demo instance) at $LOOKERSDK_BASE_URL, pid $SANDBOX_PID"
# The guardian's side of the demo instance's past: its earlier trashes and a warning 15 days ago
# (without it nothing is trashed today: owners are always warned first).
python -c "
from guardian.looker.client import connect
from guardian.sandbox.looker.history import seed_history_from_api
from guardian.settings import load_settings
from guardian.store import get_store
settings = load_settings()
print('history plan', seed_history_from_api(settings, get_store(settings), connect(settings)))
"

say "Looker: guardian looker plan (a dry run: nothing changes in Looker)"
guardian looker plan

say "Looker: airflow dags test looker_dashboard_deletion in APPLY mode"
if ! airflow dags test looker_dashboard_deletion -c '{"mode": "apply", "skip_approval": true}' >"$DEMO_DIR/looker-dag.log" 2>&1; then
  tail -40 "$DEMO_DIR/looker-dag.log"
  exit 1
fi
grep -E "moved to trash|permanently deleted|^plan [0-9]+:" "$DEMO_DIR/looker-dag.log" | sed 's/^.*INFO - //' | sort -u || true
PLAN_ID=$(guardian looker report --json | python -c 'import json,sys; print(json.load(sys.stdin)["plans"][0]["id"])')
guardian looker plan --show "$PLAN_ID"

say "Looker: restore dashboard 4 (trashed), dashboard 17 (purged, re-imported from its backup), Look 2 (trashed) and Look 9 (purged, re-created from its backed-up query)"
guardian looker restore 4 17 look:2 look:9
guardian looker report --limit 5

say "Looker: the owners of dashboard 9 and Look 8 keep them for a quarter"
guardian looker keep 9 --until "$(date -u -d '+90 days' +%F)" --reason "used for the quarterly review"
guardian looker keep look:8 --until "$(date -u -d '+90 days' +%F)" --reason "linked from the sales wiki"

say "Looker: the audit trail of dashboard 4 (backup, trash started/ok, restore)"
COLUMNS=160 guardian audit tail -n 10 --target looker:default/dashboard/4
