#!/usr/bin/env bash
# Install the system packages dagfoundry needs when they are missing (Debian, as root):
# Java 17 for Spark and Debezium, the PostgreSQL client, docker-compose (only to
# validate docker-compose.yaml; no Docker engine is needed) and Chromium (headless, the
# real-scheduler test screenshots the Airflow UI). Idempotent and quiet when
# everything is there.
set -euo pipefail

missing=()
command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
command -v psql >/dev/null 2>&1 || missing+=(postgresql-client)
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)

if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi
if [[ "$(id -u)" -ne 0 ]]; then
  echo "ensure_system_packages: missing ${missing[*]}; install them (apt-get install ${missing[*]})" >&2
  exit 1
fi
echo "ensure_system_packages: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
