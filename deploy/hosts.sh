#!/usr/bin/env bash
# Separate hosts on this machine: each Kafka broker, each Redis server, the edge site (edge
# workers and cameras), the data centre (cloud workers) and a core host (Prometheus, evaluator,
# exporter, a Sentinel) in its own Linux network namespace, joined by veth links to one bridge.
# Addresses exist only inside those namespaces (10.77.0.0/24 by default): the bridge and the
# root namespace get none, so nothing here is reachable from outside, or from this host's
# own processes except through `ip netns exec`. Needs root.
#
# Usage: deploy/hosts.sh up [--brokers N] [--uplink-mbit R]   create them (idempotent)
#        deploy/hosts.sh down                                   kill what runs in them, remove all
#        deploy/hosts.sh link HOST up|down                      plug HOST's cable in or out
#        deploy/hosts.sh exec HOST CMD...                       run CMD on HOST, with the
#                                                               settings' variables that point
#                                                               clients at the topology's servers
#        deploy/hosts.sh status                                 hosts, addresses, links
# Hosts: kafka1..kafkaN (N = --brokers, else deploy.brokers, at most 3), redis1, redis2, core,
# edge, dc. --uplink-mbit R shapes the edge site's uplink (edge to everything else) to R Mbit/s
# with a token bucket (tc tbf; netem is not in every kernel). up undoes what it did when it
# fails; names carry a prefix derived from SPLITEE_VAR_DIR, so two var dirs get two topologies.
# While the topology is up, the deploy scripts run each server and worker on its host
# (deploy/lib.sh: in_host) and deploy/down.sh calls `hosts.sh down` last.
set -euo pipefail
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NET="${SPLITEE_HOSTS_NET:-10.77.0}"
[[ "$NET" =~ ^10\.[0-9]{1,3}\.[0-9]{1,3}$ ]] || die "SPLITEE_HOSTS_NET must be 10.X.Y (a /24 of 10/8)"
PREFIX="sp$(printf '%s' "$VAR_DIR" | sha1sum | cut -c1-4)"
BRIDGE="$PREFIX-br"

(( EUID == 0 )) || die "deploy/hosts.sh needs root (network namespaces)"
command -v ip >/dev/null 2>&1 || die "ip (iproute2) not found"

# The hosts of a topology with N brokers.
host_list() { # N
  local i out=()
  for ((i = 1; i <= $1; i++)); do out+=("kafka$i"); done
  printf '%s\n' "${out[@]}" redis1 redis2 core edge dc
}
veth() { printf '%s-%s\n' "$PREFIX" "$1"; }   # HOST -> its cable's end on the bridge

# Remove whatever exists of the topology: processes left in a namespace (ours: we made it),
# namespaces (their veth ends go with them), the bridge, the state file.
teardown() {
  local ns pid
  for ns in $(ip netns list 2>/dev/null | awk -v p="$PREFIX-" 'index($1, p) == 1 {print $1}'); do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
    ip netns delete "$ns" 2>/dev/null || true
  done
  ip link delete "$BRIDGE" 2>/dev/null || true
  rm -f "$HOSTS_ENV"
}

add_host() { # HOST
  local h="$1" ns ip
  ns="$PREFIX-$h"
  ip="$(HOSTS_NET="$NET" host_ip "$h")"
  ip netns add "$ns"
  ip link add "$(veth "$h")" type veth peer name eth0 netns "$ns"
  ip link set "$(veth "$h")" master "$BRIDGE" up
  ip -n "$ns" link set lo up
  ip -n "$ns" addr add "$ip/24" dev eth0
  ip -n "$ns" link set eth0 up
}

cmd_up() {
  local n="" mbit=0 h
  while (( $# )); do
    case "$1" in
      --brokers) n="$2"; shift ;;
      --uplink-mbit) mbit="$2"; shift ;;
      *) die "unknown argument: $1 (try --help)" ;;
    esac
    shift
  done
  [[ -n "$n" ]] || n="$(kafka_brokers)"
  [[ "$n" =~ ^[1-3]$ ]] || die "the topology has hosts for 1 to 3 brokers (got $n)"
  [[ "$mbit" =~ ^[0-9]+$ ]] || die "--uplink-mbit takes whole Mbit/s (got $mbit)"
  if hosts_up; then
    log "hosts already up ($HOSTS_PREFIX, $HOSTS_NET.0/24)"
    return 0
  fi
  mkdir -p "$RUN_DIR"
  trap 'err "hosts.sh up failed; removing what it made"; teardown' ERR
  ip link add "$BRIDGE" type bridge
  ip link set "$BRIDGE" up
  for h in $(host_list "$n"); do add_host "$h"; done
  if (( mbit > 0 )); then
    # the edge site's uplink: what leaves its namespace (burst: 1/100 s worth, at least 32 KiB)
    local burst=$(( mbit * 1250 > 32768 ? mbit * 1250 : 32768 ))
    ip -n "$PREFIX-edge" link set eth0 txqueuelen 1000
    tc -n "$PREFIX-edge" qdisc add dev eth0 root tbf rate "${mbit}mbit" burst "$burst" latency 200ms
  fi
  printf 'HOSTS_PREFIX=%s\nHOSTS_NET=%s\nHOSTS_BROKERS=%s\nHOSTS_UPLINK_MBIT=%s\n' \
    "$PREFIX" "$NET" "$n" "$mbit" > "$HOSTS_ENV.tmp"
  mv -f "$HOSTS_ENV.tmp" "$HOSTS_ENV"
  trap - ERR
  log "hosts up: $(host_list "$n" | tr '\n' ' ')on $NET.0/24 (bridge $BRIDGE$( ((mbit)) && printf ', edge uplink %s Mbit/s' "$mbit"))"
}

cmd_status() {
  hosts_up || { log "hosts down"; return 3; }
  local h state
  for h in $(host_list "${HOSTS_BROKERS:-3}"); do
    state="$(cat "/sys/class/net/$(veth "$h")/operstate" 2>/dev/null || echo missing)"
    printf '%-8s %-16s ns %-16s link %s\n' "$h" "$(host_ip "$h")" "$(host_ns "$h")" "$state"
  done
  if [[ "${HOSTS_UPLINK_MBIT:-0}" != 0 ]]; then
    tc -n "$(host_ns edge)" qdisc show dev eth0
  fi
}

case "${1:-}" in
  up) shift; cmd_up "$@" ;;
  down)
    teardown
    log "hosts down (namespaces, links and bridge $BRIDGE removed)" ;;
  link)
    hosts_up || die "hosts are not up"
    [[ $# == 3 && "$3" =~ ^(up|down)$ ]] || die "usage: hosts.sh link HOST up|down"
    ip link set "$(veth "$2")" "$3"
    log "$2: link $3" ;;
  exec)
    hosts_up || die "hosts are not up"
    (( $# >= 3 )) || die "usage: hosts.sh exec HOST CMD..."
    h="$2"
    shift 2
    export_hosts_env   # the client settings of the topology (servers' addresses)
    exec ip netns exec "$(host_ns "$h")" "$@" ;;
  status) cmd_status ;;
  -h|--help) usage ;;
  *) die "usage: hosts.sh up|down|link|exec|status (try --help)" ;;
esac
