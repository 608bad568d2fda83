#!/usr/bin/env bash
# Stop splitee's local servers (Prometheus, Redis, Kafka) started by
# deploy/servers-up.sh. Idempotent: servers not running are skipped.
# Exit status: 0 when none of them is left running, 1 otherwise.
set -euo pipefail
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

case "${1:-}" in
  -h|--help) sed -n '2,4p' "$0"; exit 0 ;;
  "") ;;
  *) die "unknown argument: $1 (try --help)" ;;
esac

failed=()
for svc in prometheus redis kafka; do
  "$DEPLOY_DIR/$svc-stop.sh" || failed+=("$svc")
done
if (( ${#failed[@]} )); then
  die "failed to stop: ${failed[*]}"
fi
