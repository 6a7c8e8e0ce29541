#!/bin/sh
# Print one secret for Airflow's `*_CMD` settings and the Guardian's file: references.
# A Docker secret (/run/secrets/NAME) wins; otherwise the value airflow-init generated in the
# secrets volume ($AIRFLOW_SECRETS_DIR). Composite values (database and broker URLs) are built
# here so that no password is ever written in a Compose or env file.
#   secret.sh fernet_key | jwt_secret | api_secret_key | postgres_password | redis_password
#   secret.sh sql_alchemy_conn | celery_result_backend | celery_broker_url
set -eu
dir=${AIRFLOW_SECRETS_DIR:-/opt/airflow/secrets}
get() {
  if [ -s "/run/secrets/$1" ]; then tr -d '\n' <"/run/secrets/$1"
  elif [ -s "$dir/$1" ]; then tr -d '\n' <"$dir/$1"
  else echo "secret $1 missing: neither /run/secrets/$1 nor $dir/$1; run airflow-init" >&2; exit 1
  fi
}
pg="${POSTGRES_USER:-airflow}:$(get postgres_password)@${POSTGRES_HOST:-postgres}:${POSTGRES_PORT:-5432}/${POSTGRES_DB:-airflow}"
case $1 in
  sql_alchemy_conn) printf 'postgresql+psycopg2://%s' "$pg" ;;
  celery_result_backend) printf 'db+postgresql://%s' "$pg" ;;
  celery_broker_url) printf 'redis://:%s@%s:%s/0' "$(get redis_password)" "${REDIS_HOST:-redis}" "${REDIS_PORT:-6379}" ;;
  flower_basic_auth) printf 'admin:%s' "$(get admin_password)" ;;
  *) get "$1" ;;
esac
