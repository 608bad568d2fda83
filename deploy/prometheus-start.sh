#!/usr/bin/env bash
# Start splitee's own Prometheus on 127.0.0.1:$SPLITEE_PROMETHEUS_PORT (default
# 9090), scraping every $SPLITEE_SCRAPE_INTERVAL (default 5s) the targets listed
# in var/prometheus/targets/*.json (file_sd) plus itself.
# Idempotent: a quick no-op when it is already running. Returns once /-/ready
# answers 200. State: var/prometheus/, log: var/log/prometheus.log.
set -euo pipefail
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NAME=prometheus
PROM_DIR="$VAR_DIR/prometheus"
CONFIG="$PROM_DIR/prometheus.yml"
TARGETS_DIR="$PROM_DIR/targets"
LOGFILE="$LOG_DIR/prometheus.log"
TIMEOUT="${SPLITEE_PROMETHEUS_START_TIMEOUT:-60}"
SCRAPE_INTERVAL="${SPLITEE_SCRAPE_INTERVAL:-5s}"

mkdir -p "$RUN_DIR" "$LOG_DIR" "$PROM_DIR/data" "$TARGETS_DIR"
exec 9> "$RUN_DIR/$NAME.lock"
flock 9

if is_running "$NAME"; then
  if http_ok "$HOST" "$PROMETHEUS_PORT" /-/ready; then
    log "prometheus already running (pid $(read_pid "$NAME"), http://$HOST:$PROMETHEUS_PORT)"
    exit 0
  fi
  if wait_http "$HOST" "$PROMETHEUS_PORT" /-/ready "$TIMEOUT" "$NAME"; then exit 0; fi
  show_log_tail "$LOGFILE"
  die "prometheus (pid $(read_pid "$NAME")) is not ready on $HOST:$PROMETHEUS_PORT; try deploy/prometheus-stop.sh"
fi
rm -f "$(pid_file "$NAME")"

command -v prometheus >/dev/null 2>&1 || die "prometheus not found: run deploy/install.sh"
require_port_free "$PROMETHEUS_PORT" "prometheus" SPLITEE_PROMETHEUS_PORT

[[ "$SCRAPE_INTERVAL" =~ ^[0-9]+(ms|s|m|h)$ ]] ||
  die "SPLITEE_SCRAPE_INTERVAL must look like 5s, 500ms or 1m (got '$SCRAPE_INTERVAL')"
render "$DEPLOY_DIR/prometheus/prometheus.yml.tmpl" "$CONFIG" \
  SCRAPE_INTERVAL="$SCRAPE_INTERVAL" TARGETS_DIR="$TARGETS_DIR" PROMETHEUS_PORT="$PROMETHEUS_PORT"

start_daemon "$NAME" "$PROM_DIR" "$LOGFILE" -- \
  prometheus \
    --config.file="$CONFIG" \
    --storage.tsdb.path="$PROM_DIR/data" \
    --web.listen-address="$HOST:$PROMETHEUS_PORT" \
    --web.enable-lifecycle

start=$SECONDS
if ! wait_http "$HOST" "$PROMETHEUS_PORT" /-/ready "$TIMEOUT" "$NAME"; then
  fail_start "$NAME" "$LOGFILE" "$TIMEOUT"
fi
log "prometheus started (pid $(read_pid "$NAME"), http://$HOST:$PROMETHEUS_PORT, $((SECONDS - start))s, log $(relpath "$LOGFILE"))"
