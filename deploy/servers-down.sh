#!/usr/bin/env bash
# Stop splitee's local servers (Prometheus, Redis, Kafka) started by
# deploy/servers-up.sh. Idempotent: servers not running are skipped.
# Exit status: 0 when none of them is left running, 1 otherwise.
set -euo pipefail
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

no_args "$@"

each_server stop prometheus redis kafka
