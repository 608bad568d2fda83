#!/usr/bin/env bash
# Install whatever is missing, then start splitee's local servers:
# Kafka (127.0.0.1:9092), Redis (:6379) and Prometheus (:9090); ports from
# SPLITEE_KAFKA_PORT / SPLITEE_REDIS_PORT / SPLITEE_PROMETHEUS_PORT.
# Idempotent: servers already running are left alone (a quick no-op).
# Exit status: 0 when all three are up, 1 otherwise (what did start stays up;
# deploy/servers-down.sh stops it).
set -euo pipefail
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

case "${1:-}" in
  -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
  "") ;;
  *) die "unknown argument: $1 (try --help)" ;;
esac

"$DEPLOY_DIR/install.sh" --quiet

failed=()
for svc in redis prometheus kafka; do
  "$DEPLOY_DIR/$svc-start.sh" || failed+=("$svc")
done
if (( ${#failed[@]} )); then
  die "failed to start: ${failed[*]} (see deploy/servers-status.sh and var/log/)"
fi
