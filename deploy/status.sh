#!/usr/bin/env bash
# What runs, where: servers (ports, logs) and every process started by deploy/up.sh, with the
# supervisor's restarts of each (workers, evaluator, exporter; "gave up" after a crash loop).
set -euo pipefail
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

no_args "$@"
"$DEPLOY_DIR/servers-status.sh" || true

# NAME STATE PID: one line, with NAME's restarts and log.
row() {
  printf '%-10s %-8s pid %-8s restarts %-14s log %s\n' "$1" "$2" "$3" "$(restart_count "$1")" \
    "$(relpath "$LOG_DIR/$1.log")"
}
if [[ -f "$(pid_file producers)" ]]; then
  if is_running producers; then row producers running "$(read_pid producers)"; else row producers ended -; fi
fi
for name in $(supervised_names); do
  child="$(child_name "$name")"
  if is_running "$name" && is_running "$child"; then
    row "$name" running "$(read_pid "$child")"
  elif is_running "$name"; then
    row "$name" restarting -   # the supervisor waits out its backoff
  elif is_running "$child"; then
    row "$name" orphaned "$(read_pid "$child")"   # supervisor killed; down.sh stops it
  else
    row "$name" stopped -
  fi
done
