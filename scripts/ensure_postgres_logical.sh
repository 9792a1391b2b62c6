#!/usr/bin/env bash
# Make the local PostgreSQL accept logical replication (Debezium CDC), idempotently.
#
# If `SHOW wal_level` is already `logical` and there are enough replication slots and
# WAL senders, nothing changes. Otherwise the settings are written with ALTER SYSTEM and
# the cluster is restarted (wal_level needs a restart), then we wait until it accepts
# connections again. Works as root on a Debian machine with the packaged cluster
# (pg_ctlcluster) and trust authentication for user postgres on 127.0.0.1.
#
# Environment: PGHOST (127.0.0.1), PGPORT (5432), PGUSER (postgres),
#              MIN_REPLICATION_SLOTS / MIN_WAL_SENDERS (20 each).
set -euo pipefail

export PGHOST="${PGHOST:-127.0.0.1}" PGPORT="${PGPORT:-5432}" PGUSER="${PGUSER:-postgres}"
MIN_SLOTS="${MIN_REPLICATION_SLOTS:-20}"
MIN_SENDERS="${MIN_WAL_SENDERS:-20}"

setting() { psql -d postgres -Atqc "SHOW $1"; }

if ! setting wal_level >/dev/null 2>&1; then
  echo "ensure_postgres_logical: cannot connect to PostgreSQL at $PGHOST:$PGPORT as $PGUSER" >&2
  exit 1
fi

wal_level="$(setting wal_level)"
slots="$(setting max_replication_slots)"
senders="$(setting max_wal_senders)"
if [[ "$wal_level" == "logical" && "$slots" -ge "$MIN_SLOTS" && "$senders" -ge "$MIN_SENDERS" ]]; then
  echo "ensure_postgres_logical: already wal_level=logical, max_replication_slots=$slots, max_wal_senders=$senders"
  exit 0
fi

psql -d postgres -qc "ALTER SYSTEM SET wal_level = 'logical'"
[[ "$slots" -ge "$MIN_SLOTS" ]] || psql -d postgres -qc "ALTER SYSTEM SET max_replication_slots = $MIN_SLOTS"
[[ "$senders" -ge "$MIN_SENDERS" ]] || psql -d postgres -qc "ALTER SYSTEM SET max_wal_senders = $MIN_SENDERS"

# Restart the cluster that listens on PGPORT (the newest installed version if several).
version="$(ls /etc/postgresql | sort -V | tail -n 1)"
cluster="main"
for dir in /etc/postgresql/*/*/; do
  if grep -Eq "^\s*port\s*=\s*$PGPORT\b" "$dir/postgresql.conf" 2>/dev/null; then
    version="$(basename "$(dirname "$dir")")"; cluster="$(basename "$dir")"
  fi
done
echo "ensure_postgres_logical: restarting PostgreSQL $version/$cluster to set wal_level=logical"
pg_ctlcluster --skip-systemctl-redirect "$version" "$cluster" restart

for _ in $(seq 1 60); do
  if [[ "$(setting wal_level 2>/dev/null || true)" == "logical" ]]; then
    echo "ensure_postgres_logical: wal_level=logical, max_replication_slots=$(setting max_replication_slots), max_wal_senders=$(setting max_wal_senders)"
    exit 0
  fi
  sleep 1
done
echo "ensure_postgres_logical: PostgreSQL did not come back with wal_level=logical within 60 s" >&2
exit 1
