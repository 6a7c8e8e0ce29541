#!/bin/sh
# Image health check: probe what this container runs (PID 1's command line), with the same
# endpoints as deploy/topology.yaml and `start_airflow.sh status`.
set -eu
cmd=$(tr '\0' ' ' </proc/1/cmdline)
http() { python -c "import sys,urllib.request; urllib.request.urlopen(sys.argv[1], timeout=10)" "$1"; }
case $cmd in
  *api-server*) http "http://localhost:8080/api/v2/monitor/health" ;;
  *"celery worker"*) celery --app airflow.providers.celery.executors.celery_executor.app inspect ping -d "celery@$HOSTNAME" ;;
  *"celery flower"*) http "http://localhost:5555/healthcheck" ;;
  *scheduler*) http "http://localhost:8974/health" ;;
  *dag-processor*) airflow jobs check --job-type DagProcessorJob --local ;;
  *triggerer*) airflow jobs check --job-type TriggererJob --local ;;
  *"guardian serve"*) http "http://localhost:${GUARDIAN_WEB__PORT:-8090}/healthz" ;;
  *) exit 0 ;;  # one-shot jobs (init) have nothing to probe
esac
