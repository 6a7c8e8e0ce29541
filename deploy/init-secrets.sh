#!/bin/sh
# First step of `docker compose up` (the airflow-secrets service): generate every secret that is
# absent, once, into the secrets volume, and say where. No default passwords anywhere: a secret
# given in deploy/secrets (mounted at /run/secrets by docker-compose.secrets.yml) is used instead; only the
# database and Redis passwords are copied into the volume, for the PostgreSQL and Redis containers.
set -eu
dir=${AIRFLOW_SECRETS_DIR:-/opt/airflow/secrets}
# Your own secrets (docker-compose.secrets.yml mounts deploy/secrets here).
own=${DOCKER_SECRETS_DIR:-/run/secrets}
mkdir -p "$dir"
umask 077
made=""
gen() {  # name, generator
  # Secrets read by the PostgreSQL, Redis and Grafana containers (they do not mount deploy/secrets).
  case $1 in postgres_password | redis_password | grafana_admin_password)
    if [ -s "$own/$1" ]; then cp "$own/$1" "$dir/$1"; return; fi ;;
  esac
  if [ -s "$own/$1" ] || [ -s "$dir/$1" ]; then return; fi
  sh -c "$2" >"$dir/$1.tmp" && mv "$dir/$1.tmp" "$dir/$1"
  made="$made $1"
}
gen fernet_key "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
gen jwt_secret "python -c 'import secrets; print(secrets.token_urlsafe(48))'"
gen api_secret_key "python -c 'import secrets; print(secrets.token_urlsafe(48))'"
gen postgres_password "python -c 'import secrets; print(secrets.token_hex(24))'"
gen redis_password "python -c 'import secrets; print(secrets.token_hex(24))'"
gen admin_password "python -c 'import secrets; print(secrets.token_urlsafe(18))'"
gen web_admin_password "python -c 'import secrets; print(secrets.token_urlsafe(18))'"
gen grafana_admin_password "python -c 'import secrets; print(secrets.token_urlsafe(18))'"
gen guardian_metrics_token "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
gen audit_hmac_key "python -c 'import secrets; print(secrets.token_urlsafe(48))'"
gen web_session_secret "python -c 'import secrets; print(secrets.token_urlsafe(48))'"
gen guardian_app_password "python -c 'import secrets; print(secrets.token_hex(24))'"
# The Guardian UI stores only an argon2 hash of its admin password (GUARDIAN_WEB__USERS).
web_pw=$own/web_admin_password; [ -s "$web_pw" ] || web_pw=$dir/web_admin_password
gen web_admin_password_hash "python -c 'import sys; from guardian.web.auth import hash_password; print(hash_password(open(sys.argv[1]).read().strip()))' $web_pw"
# Alertmanager's SMTP password and Slack webhook are yours to give (deploy/secrets); copied when present.
for f in alertmanager_smtp_password alertmanager_slack_webhook; do
  if [ -s "$own/$f" ]; then cp "$own/$f" "$dir/$f"; fi
done
# The simple auth manager reads users' passwords from this JSON file.
admin=$(/opt/guardian/deploy/secret.sh admin_password)
printf '{"admin": "%s"}\n' "$admin" >"$dir/simple_auth_manager_passwords.json"
# Runs as root once, then hands the files to their readers: Airflow (uid 50000) owns them all;
# PostgreSQL and Redis (uid/gid 999) may read only their own password through the group.
chown 50000:0 "$dir" "$dir"/*
chmod 0400 "$dir"/*
chmod 0600 "$dir/simple_auth_manager_passwords.json"  # the auth manager opens it read-write
for f in postgres_password redis_password guardian_app_password; do
  [ -f "$dir/$f" ] && chgrp 999 "$dir/$f" && chmod 0440 "$dir/$f"
done
# Prometheus and Alertmanager run as nobody (65534) and read their own files through the group.
for f in guardian_metrics_token alertmanager_smtp_password alertmanager_slack_webhook; do
  [ -f "$dir/$f" ] && chgrp 65534 "$dir/$f" && chmod 0440 "$dir/$f"
done
# Grafana runs as 472:0 and reads its admin password through group 0.
[ -f "$dir/grafana_admin_password" ] && chmod 0440 "$dir/grafana_admin_password"
chmod 0751 "$dir"
if [ -n "$made" ]; then echo "airflow-secrets: generated$made in the volume airflow-secrets ($dir)"; fi
echo "airflow-secrets: Airflow UI (:8080), Guardian UI (:8090), Flower (:5555) and Grafana (:3000) user admin;"
echo "  passwords: docker compose exec airflow-apiserver cat $dir/admin_password (Airflow, Flower),"
echo "  $dir/web_admin_password (Guardian UI), $dir/grafana_admin_password (Grafana)"
