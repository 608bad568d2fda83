#!/usr/bin/env bash
# Install what splitee's local servers need, skipping whatever is already there:
#   system (apt): redis-server + redis-tools + redis-sentinel, prometheus, iproute2 (the
#                 cluster topology's network namespaces), and Java 17 / Maven
#                 if missing (Debian's own services are stopped and disabled:
#                 splitee runs its own instances with its own ports/configs)
#   kafka:        the Apache Kafka jars (deploy/kafka/fetch-jars.sh) into
#                 ${SPLITEE_CACHE_DIR:-~/.cache/splitee}/kafka-<version>/libs
# Usage: deploy/install.sh [--kafka-only | --system-only] [--quiet]
# Runs apt-get only when a package is missing (needs root, or sudo).
set -euo pipefail
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

do_system=1 do_kafka=1 quiet=0
for arg in "$@"; do
  case "$arg" in
    --kafka-only) do_system=0 ;;
    --system-only) do_kafka=0 ;;
    -q|--quiet) quiet=1 ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument: $arg (try --help)" ;;
  esac
done
(( do_system || do_kafka )) || die "--kafka-only and --system-only exclude each other"

# command -> Debian package providing it
declare -A PKG_OF=(
  [redis-server]=redis-server
  [redis-cli]=redis-tools
  [redis-sentinel]=redis-sentinel
  [prometheus]=prometheus
  [java]=openjdk-17-jre-headless
  [mvn]=maven
  [setsid]=util-linux
  [flock]=util-linux
  [ip]=iproute2
)
wanted=()
(( do_system )) && wanted+=(redis-server redis-cli redis-sentinel prometheus setsid flock ip)
(( do_kafka )) && wanted+=(java mvn)

missing=()
for cmd in "${wanted[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 && continue
  pkg="${PKG_OF[$cmd]}"
  [[ " ${missing[*]} " == *" $pkg "* ]] || missing+=("$pkg")
done

# Debian's packages start (and enable) their own services where the init system
# allows it. They would hold 6379/9090, so stop and disable them.
stop_system_service() { # SERVICE
  local svc="$1"
  if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
    if systemctl is-active --quiet "$svc" 2>/dev/null; then
      log "stopping the system service $svc started by apt (splitee runs its own)"
    fi
    $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || true
  elif [[ -x "/etc/init.d/$svc" ]]; then
    if $SUDO "/etc/init.d/$svc" status >/dev/null 2>&1; then
      log "stopping the system service $svc started by apt (splitee runs its own)"
      $SUDO "/etc/init.d/$svc" stop >/dev/null 2>&1 || true
    fi
    command -v update-rc.d >/dev/null 2>&1 && { $SUDO update-rc.d "$svc" disable >/dev/null 2>&1 || true; }
  fi
  return 0
}

SUDO=""
if (( ${#missing[@]} )); then
  if (( EUID != 0 )); then
    command -v sudo >/dev/null 2>&1 || die "need root (or sudo) to apt-get install: ${missing[*]}"
    SUDO=sudo
  fi
  command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install by hand: ${missing[*]}"
  log "installing with apt-get: ${missing[*]}"
  mkdir -p "$LOG_DIR"
  start=$SECONDS
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null ||
    die "apt-get update failed"
  # --no-install-recommends: prometheus recommends prometheus-node-exporter (another service).
  if ! $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        "${missing[@]}" > "$LOG_DIR/apt-install.log" 2>&1; then
    cat "$LOG_DIR/apt-install.log" >&2
    die "apt-get install failed"
  fi
  rm -f "$LOG_DIR/apt-install.log"
  for pkg in "${missing[@]}"; do
    case "$pkg" in
      redis-server|redis-sentinel|prometheus) stop_system_service "$pkg" ;;
    esac
  done
  log "apt-get install done in $((SECONDS - start))s"
fi

# Every wanted command must be there now.
for cmd in "${wanted[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || die "$cmd still not found after installing ${PKG_OF[$cmd]}"
done

if (( do_kafka )); then
  "$DEPLOY_DIR/kafka/fetch-jars.sh"
fi

if (( ! quiet )); then
  (( do_system )) && log "install: redis-server, redis-cli, redis-sentinel, prometheus present"
  (( do_kafka )) && log "install: java, mvn and the Kafka $KAFKA_VERSION jars present ($KAFKA_LIBS)"
fi
exit 0
