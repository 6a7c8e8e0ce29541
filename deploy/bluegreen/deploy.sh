#!/usr/bin/env bash
# Host-side steps of the delivery pipeline on a Docker Compose host (.github/workflows/deploy.yml
# runs them over SSH from the release's checkout; docs/cicd.md explains the strategy).
#
#   deploy/bluegreen/deploy.sh staging  IMAGE   one project, recreated in place, then smoke-tested
#   deploy/bluegreen/deploy.sh promote  IMAGE   backup, migrations, standby colour, smoke, switch, scheduler once
#   deploy/bluegreen/deploy.sh smoke            `guardian smoke` through the edge (exit 1 on a FAIL)
#   deploy/bluegreen/deploy.sh watch SECONDS    post-deploy monitor; exit 1 on a regression
#   deploy/bluegreen/deploy.sh rollback         edge back to the previous colour, scheduler tier back to its image
#   deploy/bluegreen/deploy.sh finish           stop the previous colour (the point after which rollback is a restore)
set -euo pipefail
cd "$(dirname "$0")/../.."
# The Compose project the production stack already runs under (its volumes hold the databases):
# Compose's own default is the folder's name, lower-cased.
default_project=$(basename "$PWD" | tr '[:upper:]' '[:lower:]' | tr -cd 'a-z0-9_-')
MAIN=${BLUEGREEN_MAIN_PROJECT:-${COMPOSE_PROJECT_NAME:-$default_project}}
STATE=$(realpath -m "${BLUEGREEN_STATE:-deploy/bluegreen/state}")
BACKUPS=${BLUEGREEN_BACKUPS:-backups}
export BLUEGREEN_MAIN_PROJECT=$MAIN BLUEGREEN_STATE=$STATE # read by the Compose overlays
mkdir -p "$STATE" "$BACKUPS"

main() { docker compose -p "$MAIN" -f docker-compose.prod.yml -f deploy/bluegreen/docker-compose.main.yml "$@"; }
# Each colour's API server is published on the host's loopback only (the edge reaches it by name).
port_of() { if [[ $1 == green ]]; then echo "${BLUEGREEN_GREEN_PORT:-8082}"; else echo "${BLUEGREEN_BLUE_PORT:-8081}"; fi; }
colour() { # colour NAME compose-args...
  local name=$1
  shift
  BLUEGREEN_COLOUR=$name BLUEGREEN_PORT=$(port_of "$name") docker compose -p "$MAIN-$name" \
    -f docker-compose.prod.yml -f deploy/bluegreen/docker-compose.colour.yml "$@"
}
edge() { docker compose -p "$MAIN-edge" -f deploy/bluegreen/docker-compose.edge.yml "$@"; }
switch() {
  python3 deploy/bluegreen/switch.py --state "$STATE" \
    --reload "docker compose -p $MAIN-edge -f deploy/bluegreen/docker-compose.edge.yml exec -T proxy nginx -s reload" \
    --test "docker compose -p $MAIN-edge -f deploy/bluegreen/docker-compose.edge.yml exec -T proxy nginx -t -q" "$@"
}
active() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['active'])" "$STATE/bluegreen.json"; }
# The image the scheduler tier runs now (empty when nothing runs yet).
running_image() {
  local id
  id=$(main ps -q airflow-scheduler | head -1)
  if [[ -n $id ]]; then docker inspect --format '{{.Config.Image}}' "$id"; fi
}
tier=(airflow-scheduler airflow-dag-processor airflow-triggerer airflow-worker guardian-web)

case ${1:-} in
  staging)
    image=${2:?image}
    export GUARDIAN_IMAGE=$image
    staging() { docker compose -p "$MAIN" -f docker-compose.prod.yml "$@"; }
    staging pull --quiet
    staging run --rm airflow-init
    staging up -d --remove-orphans
    staging exec -T airflow-apiserver guardian smoke --wait 300 --interval 10
    ;;
  promote)
    image=${2:?image}
    if [[ ! -f $STATE/bluegreen.json ]]; then
      # First blue-green deployment on this host: the running tier becomes blue.
      previous=$(running_image)
      GUARDIAN_IMAGE=${previous:-$image} colour blue up -d --no-deps airflow-apiserver
      python3 deploy/bluegreen/switch.py --state "$STATE" init --color blue --upstream airflow-apiserver-blue:8080
      # Port 8080 passes from the main project's API server to the edge: the one short gap, once per host.
      GUARDIAN_IMAGE=${previous:-$image} main up -d --scale airflow-apiserver=0 --remove-orphans
      edge up -d
    fi
    current=$(active)
    next=green
    [[ $current == green ]] && next=blue
    # What a rollback returns the scheduler tier to.
    running_image >"$STATE/previous-image"
    export GUARDIAN_IMAGE=$image
    # 1. Backup, then migrations (forward-compatible: the running release keeps working on the new schema).
    stamp=$(date -u +%Y%m%dT%H%M%SZ)
    main exec -T postgres pg_dump -U airflow -Fc airflow >"$BACKUPS/airflow-$stamp.dump"
    main exec -T postgres pg_dump -U airflow -Fc guardian >"$BACKUPS/guardian-$stamp.dump"
    main run --rm airflow-init
    # 2. The new release's stateless tier beside the running one; smoke it directly; switch the edge.
    colour "$next" pull --quiet airflow-apiserver
    colour "$next" up -d --no-deps --force-recreate airflow-apiserver
    export BLUEGREEN_COLOUR=$next BLUEGREEN_PORT=$(port_of "$next") # the smoke command's compose interpolation
    switch promote --upstream "airflow-apiserver-$next:8080" --probe "http://127.0.0.1:$(port_of "$next")" --timeout 300 \
      --smoke "docker compose -p $MAIN-$next -f docker-compose.prod.yml -f deploy/bluegreen/docker-compose.colour.yml exec -T -e GUARDIAN_MONITORING__AIRFLOW_API_URL=http://localhost:8080 airflow-apiserver guardian smoke --wait 120 --interval 10"
    # 3. Scheduler, DAG processor, triggerer and workers switch once (Celery workers finish their tasks).
    main up -d --no-deps "${tier[@]}"
    ;;
  smoke)
    main exec -T airflow-scheduler guardian smoke --wait 180 --interval 10
    ;;
  watch)
    main exec -T airflow-scheduler guardian smoke --watch "${2:?seconds}" --interval 60 --json
    ;;
  rollback)
    switch rollback
    GUARDIAN_IMAGE=$(cat "$STATE/previous-image") main up -d --no-deps "${tier[@]}"
    ;;
  finish)
    state=$(switch status)
    old=$(python3 -c "import json,sys; s=json.loads(sys.argv[1]); print(s['previous'] or '')" "$state")
    if [[ -n $old ]]; then colour "$old" down; fi
    switch finish
    ;;
  *)
    sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
