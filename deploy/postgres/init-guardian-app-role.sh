#!/bin/sh
# Runs once, when the PostgreSQL volume is first initialised (production compose): the role the
# Guardian's processes connect as. It owns nothing; `guardian db upgrade`, run by airflow-init as
# the owner (GUARDIAN_STORE__OWNER_USER), grants it what it needs and only INSERT and SELECT on
# audit_log, so the application cannot rewrite its own audit trail (docs/operations.md#security).
set -eu
password=$(cat /secrets/guardian_app_password)
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v app_password="$password" <<'SQL'
CREATE ROLE guardian_app LOGIN PASSWORD :'app_password';
SQL
