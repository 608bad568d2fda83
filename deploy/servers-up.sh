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

no_args "$@"

"$DEPLOY_DIR/install.sh" --quiet
each_server start redis prometheus kafka
