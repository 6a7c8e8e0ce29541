#!/usr/bin/env bash
# Monitoring end to end: a local SMTP server (aiosmtpd) and a local Slack webhook receiver take
# the alerts; guardian_health runs once against an Airflow API address where nothing listens
# (an honest misconfiguration), so its collect task fails after its retry and the failure
# callback emails the team and posts to Slack; the receivers show what arrived. Then the health
# DAG runs as configured (metadata DB), snapshots every DAG and evaluates the thresholds; the
# web UI (standalone, its own login) shows the failure on the Overview page and serves /metrics.
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${DEMO_DIR:?run through scripts/demo.sh}"
export COLUMNS="${COLUMNS:-200}"
ALERTS="$DEMO_DIR/alerts"
mkdir -p "$ALERTS"

PIDS=()
cleanup() { for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT

guardian health receivers --folder "$ALERTS" >"$DEMO_DIR/receivers.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do [ -s "$ALERTS/receivers.env" ] && break; sleep 0.1; done
# shellcheck disable=SC1091
source "$ALERTS/receivers.env"
export GUARDIAN_NOTIFY__SMTP_HOST=127.0.0.1
export GUARDIAN_NOTIFY__SMTP_PORT="$SMTP_PORT"
export GUARDIAN_NOTIFY__EMAIL_TO=data-team@example.com
export DEMO_SLACK_WEBHOOK="$SLACK_URL"
export GUARDIAN_NOTIFY__SLACK_WEBHOOK_REF=env:DEMO_SLACK_WEBHOOK
export GUARDIAN_NOTIFY__UI_BASE_URL=http://localhost:8080
say "Health: local SMTP on 127.0.0.1:$SMTP_PORT and Slack webhook receiver are up"
guardian health test-alert

DEAD_PORT=$(python -c "from guardian.sandbox.serve import free_port; print(free_port())")
say "Health: guardian_health with the Airflow API pointed at 127.0.0.1:$DEAD_PORT, where nothing listens"
echo "(collect_runs fails, waits for its retry, fails again: about a minute)"
if GUARDIAN_MONITORING__AIRFLOW_API_URL="http://127.0.0.1:$DEAD_PORT" GUARDIAN_MONITORING__API_TIMEOUT=2 \
  airflow dags test guardian_health >"$DEMO_DIR/health-failing.log" 2>&1; then
  echo "expected guardian_health to fail with the API unreachable"; tail -30 "$DEMO_DIR/health-failing.log"; exit 1
fi
grep -E "Airflow API .* unreachable" "$DEMO_DIR/health-failing.log" | head -1 | cut -c1-300 || true

say "Health: what the team received"
python - "$ALERTS" <<'PY'
import json, sys
from email import message_from_bytes, policy
from pathlib import Path

folder = Path(sys.argv[1])
mails = sorted(folder.glob("mail-*.eml"), key=lambda p: int(p.stem.split("-")[1]))
failure = None
for path in mails:
    msg = message_from_bytes(path.read_bytes(), policy=policy.default)
    print(f"email  {path.name}: {msg['Subject']}")
    if "FAILED" in msg["Subject"] and failure is None:
        failure = msg
if failure is None:
    sys.exit("no failure email arrived")
print("\n--- failure email body ---")
print(failure.get_body(preferencelist=("plain",)).get_content().strip())
posts = sorted(folder.glob("slack-*.json"), key=lambda p: int(p.stem.split("-")[1]))
failed_posts = [json.loads(p.read_text()) for p in posts if "FAILED" in p.read_text()]
if not failed_posts:
    sys.exit("no failure Slack message arrived")
print("\n--- Slack message ---")
print(failed_posts[0]["text"])
PY

say "Health: guardian_health as configured (runs from the metadata DB), then the health summary"
airflow dags test guardian_health >"$DEMO_DIR/health.log" 2>&1 || { tail -40 "$DEMO_DIR/health.log"; exit 1; }
grep -E "collected [0-9]+ run|^ *[a-z_]+: 7d success|ALERT|RESOLVED|no alert changes" "$DEMO_DIR/health.log" \
  | sed -E 's/^.*\] //' | cut -c1-220 || true
guardian health show

say "Health: the web UI (standalone, own login) shows it; /metrics for Prometheus"
UI_PORT=$(python -c "from guardian.sandbox.serve import free_port; print(free_port())")
export DEMO_UI_PASSWORD="demo-$(python -c 'import secrets; print(secrets.token_hex(6))')"
# The UI keeps only an argon2 hash of each password (`guardian web hash-password` makes one).
DEMO_UI_HASH=$(python -c 'import os; from guardian.web.auth import hash_password; print(hash_password(os.environ["DEMO_UI_PASSWORD"]))')
export DEMO_UI_HASH
export DEMO_METRICS_TOKEN="metrics-$(python -c 'import secrets; print(secrets.token_hex(8))')"
# Plain http on 127.0.0.1 here, so the session cookie is not marked Secure; /metrics needs its token.
GUARDIAN_WEB__USERS="demo:viewer:env:DEMO_UI_HASH" GUARDIAN_WEB__SECURE_COOKIES=false \
  GUARDIAN_WEB__METRICS_TOKEN_REF=env:DEMO_METRICS_TOKEN \
  guardian serve --port "$UI_PORT" >"$DEMO_DIR/ui.log" 2>&1 &
PIDS+=($!)
python -c "from guardian.sandbox.serve import wait_for_port; wait_for_port('127.0.0.1', $UI_PORT)"
python - "$UI_PORT" <<'PY'
import os, re, sys
import httpx

base = f"http://127.0.0.1:{sys.argv[1]}"
with httpx.Client(base_url=base, timeout=30) as c:
    assert c.get("/", follow_redirects=False).status_code == 303, "anonymous access must be refused"
    c.post("/login", data={"username": "demo", "password": os.environ["DEMO_UI_PASSWORD"], "next": "/"})
    page = c.get("/")
    assert page.status_code == 200 and "guardian_health" in page.text
    shown = "collect_runs" in page.text and "unreachable" in page.text
    print(f"Overview: {len(re.findall('data-dag=', page.text))} DAG(s); the collect_runs failure shown: {shown}")
    assert c.get("/metrics").status_code == 401, "/metrics must need its token"
    metrics = c.get("/metrics", headers={"Authorization": f"Bearer {os.environ['DEMO_METRICS_TOKEN']}"}).text
    for line in metrics.splitlines():
        if line.startswith(("guardian_dag_success_ratio{", "guardian_alerts_open{", "guardian_alert_deliveries_total")):
            print(line)
    if not shown:
        sys.exit("the failure is missing from the Overview page")
PY
echo "UI: GUARDIAN_WEB__USERS=name:role:env:VAR (an argon2 hash from guardian web hash-password) guardian serve  (or /guardian in the Airflow 3 API server)"
