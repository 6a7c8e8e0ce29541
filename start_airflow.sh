#!/usr/bin/env bash
# One entry point for the whole Airflow Guardian system: start | stop | status | logs | restart.
#
# With a Docker engine it drives Docker Compose (docker-compose.yml, project guardian-dev, or the
# production file with --prod, project guardian-prod, plus docker-compose.secrets.yml when
# deploy/secrets/ holds files and --env-file deploy/env/compose.env when it exists). Without one
# (or with --local) it runs the same topology as local processes from .venv under supervisord:
# PostgreSQL and Redis from this machine, CeleryExecutor with 2 workers, scheduler, DAG processor,
# triggerer and the API server on :8080 (deploy/localrun.py, state in var/local/, logs in
# logs/local/). status, stop, logs and restart act on what start started, whatever its flags.
# See docs/deployment.md and docs/runbooks/start-stop.md.
#
#   ./start_airflow.sh start [--local|--docker] [--prod] [--workers N] [--port N] [--flower] [--sandboxes]
#   ./start_airflow.sh stop | status | restart
#   ./start_airflow.sh logs [SERVICE] [-f] [-n LINES]
set -euo pipefail
cd "$(dirname "$0")"
REPO=$PWD

usage() { sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; }

command=${1:-}
[[ -z $command || $command == -h || $command == --help ]] && { usage; exit 0; }
shift
case $command in start | stop | status | logs | restart) ;; *) usage >&2; exit 2 ;; esac

mode=auto prod=false local_args=() compose_args=() positional=()
while (($#)); do
  case $1 in
    --local) mode=local ;;
    --docker) mode=docker ;;
    --prod) prod=true ;;
    --workers) local_args+=(--workers "$2"); compose_args+=(--scale "airflow-worker=$2"); shift ;;
    --port) local_args+=(--port "$2"); shift ;;
    --flower) local_args+=(--flower) ;;
    --sandboxes) local_args+=(--sandboxes) ;;
    -f | --follow) local_args+=(-f); compose_args+=(-f) ;;
    -n | --lines) local_args+=(-n "$2"); compose_args+=(--tail "$2"); shift ;;
    -h | --help) usage; exit 0 ;;
    --*) echo "unknown option $1" >&2; usage >&2; exit 2 ;;
    *) positional+=("$1"); compose_args+=("$1") ;;
  esac
  shift
done

engine_present() { command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; }
if [[ $mode == auto ]]; then
  if engine_present; then mode=docker; else mode=local; fi
fi

if [[ $mode == docker ]]; then
  engine_present || { echo "no Docker engine with the compose plugin here; use --local" >&2; exit 1; }
  files=(-f docker-compose.yml)
  $prod && files=(-f docker-compose.prod.yml)
  # Compose variables kept across runs (e.g. AIRFLOW_WORKER_REPLICAS, PRIVATE_BIND_ADDRESS).
  $prod && [[ -f deploy/env/compose.env ]] && files=(--env-file deploy/env/compose.env "${files[@]}")
  $prod && [[ -d deploy/secrets ]] && [[ -n $(ls -A deploy/secrets) ]] && files+=(-f docker-compose.secrets.yml)
  dc() { docker compose "${files[@]}" "$@"; }
  case $command in
    start)
      if $prod; then dc up -d "${compose_args[@]}"; else dc up -d; fi
      dc ps
      url=http://localhost:8080
      $prod && url="https://<this host>/"
      echo "Airflow UI: $url  (user admin; password: docker compose ${files[*]} exec airflow-apiserver cat /opt/airflow/secrets/admin_password)"
      ;;
    stop) dc down ;;
    restart) dc restart ;;
    status) dc ps ;;
    logs) dc logs "${compose_args[@]}" ;;
  esac
  exit 0
fi

# Local processes.
[[ -x .venv/bin/python ]] || { echo "no .venv here: run \`make venv\` first" >&2; exit 1; }
pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null || { echo "PostgreSQL does not answer on 127.0.0.1:5432; start it (docs/runbooks/start-stop.md)" >&2; exit 1; }
if command -v redis-cli >/dev/null && ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  echo "Redis does not answer on 127.0.0.1:6379; start it (docs/runbooks/start-stop.md)" >&2
  exit 1
fi
exec .venv/bin/python "$REPO/deploy/localrun.py" "${local_args[@]}" "$command" "${positional[@]}"
