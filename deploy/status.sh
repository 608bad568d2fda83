#!/usr/bin/env bash
# What runs, where: servers (ports, logs) and every worker started by deploy/up.sh.
set -euo pipefail
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

"$DEPLOY_DIR/servers-status.sh" || true
shopt -s nullglob
for f in "$RUN_DIR"/producers.pid "$RUN_DIR"/edge-*.pid "$RUN_DIR"/cloud-*.pid \
  "$RUN_DIR"/evaluator*.pid "$RUN_DIR"/exporter*.pid; do
  name="$(basename "$f" .pid)"
  if is_running "$name"; then
    printf '%-10s running  pid %-8s log %s\n' "$name" "$(read_pid "$name")" \
      "$(relpath "$LOG_DIR/$name.log")"
  else
    printf '%-10s stopped  (stale pid file)  log %s\n' "$name" "$(relpath "$LOG_DIR/$name.log")"
  fi
done
