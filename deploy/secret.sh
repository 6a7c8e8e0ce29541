#!/bin/sh
# Print one secret for Airflow's `*_CMD` settings and the Guardian's file: references.
# Your own secret (/run/secrets/NAME: deploy/secrets through docker-compose.secrets.yml) wins;
# otherwise the value airflow-secrets generated in the secrets volume ($AIRFLOW_SECRETS_DIR).
# Composite values (database and broker URLs) are built here, passwords percent-encoded (a password
# may hold @ : / and such), so that no password is ever written in a Compose or env file.
#   secret.sh fernet_key | jwt_secret | api_secret_key | postgres_password | redis_password
#   secret.sh sql_alchemy_conn | celery_result_backend | celery_broker_url
set -eu
dir=${AIRFLOW_SECRETS_DIR:-/opt/airflow/secrets}
# Your own secrets (docker-compose.secrets.yml mounts deploy/secrets here).
own=${DOCKER_SECRETS_DIR:-/run/secrets}
get() {
  if [ -s "$own/$1" ]; then tr -d '\n' <"$own/$1"
  elif [ -s "$dir/$1" ]; then tr -d '\n' <"$dir/$1"
  else echo "secret $1 missing: neither $own/$1 nor $dir/$1; run airflow-init" >&2; exit 1
  fi
}
enc() { python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""), end="")' "$1"; }
pg() { printf '%s:%s@%s:%s/%s' "${POSTGRES_USER:-airflow}" "$(enc "$(get postgres_password)")" "${POSTGRES_HOST:-postgres}" "${POSTGRES_PORT:-5432}" "${POSTGRES_DB:-airflow}"; }
case $1 in
  sql_alchemy_conn) printf 'postgresql+psycopg2://%s' "$(pg)" ;;
  celery_result_backend) printf 'db+postgresql://%s' "$(pg)" ;;
  celery_broker_url) printf 'redis://:%s@%s:%s/0' "$(enc "$(get redis_password)")" "${REDIS_HOST:-redis}" "${REDIS_PORT:-6379}" ;;
  flower_basic_auth) printf 'admin:%s' "$(get admin_password)" ;;
  *) get "$1" ;;
esac
