#!/usr/bin/env bash
# Start splitee's own Prometheus on 127.0.0.1:$SPLITEE_PROMETHEUS_PORT (default
# 9090), scraping every $SPLITEE_SCRAPE_INTERVAL (default 5s) the targets listed
# in var/prometheus/targets/*.json (file_sd) plus itself.
# Idempotent: a quick no-op when it is already running. Returns once /-/ready
# answers 200. State: var/prometheus/, log: var/log/prometheus.log.
# The lifecycle API (POST /-/reload, /-/quit) is off unless SPLITEE_PROMETHEUS_LIFECYCLE=1:
# anyone on the host could stop Prometheus through it. Reload with SIGHUP instead (file_sd
# targets are picked up without one).
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

mkdir -p "$LOG_DIR" "$PROM_DIR/data" "$TARGETS_DIR"
take_lock "$NAME"

# On deploy/hosts.sh's core host while its topology is up (it scrapes the workers there).
LISTEN="$(server_host core)"
ADDR="http://$LISTEN:$PROMETHEUS_PORT"
exit_if_running "$NAME" "$ADDR" "$LOGFILE" "$TIMEOUT" fn_on core http_ok "$LISTEN" "$PROMETHEUS_PORT" /-/ready

command -v prometheus >/dev/null 2>&1 || die "prometheus not found: run deploy/install.sh"
hosts_up || require_port_free "$PROMETHEUS_PORT" "prometheus" SPLITEE_PROMETHEUS_PORT

[[ "$SCRAPE_INTERVAL" =~ ^[0-9]+(ms|s|m|h)$ ]] ||
  die "SPLITEE_SCRAPE_INTERVAL must look like 5s, 500ms or 1m (got '$SCRAPE_INTERVAL')"
render "$DEPLOY_DIR/prometheus/prometheus.yml.tmpl" "$CONFIG" \
  SCRAPE_INTERVAL="$SCRAPE_INTERVAL" TARGETS_DIR="$TARGETS_DIR" PROMETHEUS_PORT="$PROMETHEUS_PORT" \
  PROMETHEUS_HOST="$LISTEN"

lifecycle=()
if [[ "${SPLITEE_PROMETHEUS_LIFECYCLE:-0}" == 1 ]]; then lifecycle=(--web.enable-lifecycle); fi
host_prefix core
start_daemon "$NAME" "$PROM_DIR" "$LOGFILE" -- \
  "${HOSTP[@]}" prometheus \
    --config.file="$CONFIG" \
    --storage.tsdb.path="$PROM_DIR/data" \
    --web.listen-address="$LISTEN:$PROMETHEUS_PORT" \
    "${lifecycle[@]}"

await_ready "$NAME" "$ADDR" "$LOGFILE" "$TIMEOUT" fn_on core http_ok "$LISTEN" "$PROMETHEUS_PORT" /-/ready
