#!/usr/bin/env bash
# Stop everything deploy/up.sh started: cameras, supervised workers (supervisor and child, by
# recorded pids), then the servers, then deploy/hosts.sh's network namespaces if they are up.
# Usage: deploy/down.sh [--keep-servers]   (servers and namespaces stay)
set -euo pipefail
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

keep=0
case "${1:-}" in
  --keep-servers) keep=1 ;;
  -h|--help) usage; exit 0 ;;
  "") ;;
  *) die "unknown argument: $1 (try --help)" ;;
esac

if [[ -f "$(pid_file producers)" ]]; then
  stop_pid producers && log "stopped producers"
fi
# Supervisors first: each stops its child and does not restart it.
for name in $(supervised_names); do
  stop_supervised "$name" && log "stopped $name"
done
rm -f "$VAR_DIR"/prometheus/targets/*.json
if (( ! keep )); then
  "$DEPLOY_DIR/servers-down.sh"
  # deploy/hosts.sh's namespaces, links and bridge, once nothing runs in them
  if hosts_up; then "$DEPLOY_DIR/hosts.sh" down; fi
fi
