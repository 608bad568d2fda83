# shellcheck shell=bash disable=SC2034  # variables here are used by the scripts that source it
# deploy/lib.sh: shared helpers for the deploy/*.sh scripts. Source it, don't run it:
#
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# Defines paths (REPO, DEPLOY_DIR, VAR_DIR, RUN_DIR, LOG_DIR, ...), ports, logging
# helpers, pid-file helpers (start_daemon / is_running / stop_pid), waiters
# (wait_port / wait_http / wait_until), the start/stop scripts' common steps
# (take_lock / exit_if_running / await_ready / stop_server) and a supervisor
# (supervise / start_supervised / stop_supervised). Every path and port can be
# overridden through environment variables; see deploy/README.md.

if [[ -n "${SPLITEE_LIB_SOURCED:-}" ]]; then return 0; fi
SPLITEE_LIB_SOURCED=1

# --- paths ------------------------------------------------------------------
# The repo root is derived from this file's location, so every script works from
# any cwd and from a clone in any folder.
DEPLOY_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
REPO="$(cd "$DEPLOY_DIR/.." && pwd -P)"

# All runtime state (data, configs rendered from templates, pid files, logs)
# lives under VAR_DIR, which is git-ignored.
VAR_DIR="${SPLITEE_VAR_DIR:-$REPO/var}"
mkdir -p "$VAR_DIR"
VAR_DIR="$(cd "$VAR_DIR" && pwd -P)"   # absolute, symlinks resolved
RUN_DIR="$VAR_DIR/run"
LOG_DIR="$VAR_DIR/log"

# Downloaded artefacts that can be shared by every clone on this machine.
CACHE_DIR="${SPLITEE_CACHE_DIR:-$HOME/.cache/splitee}"

# --- ports (everything binds to 127.0.0.1 only) ----------------------------
HOST=127.0.0.1
KAFKA_PORT="${SPLITEE_KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${SPLITEE_KAFKA_CONTROLLER_PORT:-9093}"
REDIS_PORT="${SPLITEE_REDIS_PORT:-6379}"
PROMETHEUS_PORT="${SPLITEE_PROMETHEUS_PORT:-9090}"

# --- Kafka ------------------------------------------------------------------
# The version is pinned in deploy/kafka/pom.xml (single source of truth).
KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$DEPLOY_DIR/kafka/pom.xml")"
KAFKA_LIBS="$CACHE_DIR/kafka-$KAFKA_VERSION/libs"

# --- separate hosts (deploy/hosts.sh) -------------------------------------------
# While deploy/hosts.sh has the topology up, $RUN_DIR/hosts.env names its network namespaces
# and each server and worker runs inside its own (in_host), on that namespace's address.
HOSTS_ENV="$RUN_DIR/hosts.env"
HOSTS_PREFIX="" HOSTS_NET=""
# shellcheck disable=SC1090
[[ -f "$HOSTS_ENV" ]] && source "$HOSTS_ENV"
hosts_up() { [[ -n "$HOSTS_PREFIX" ]]; }

# The address of a host of the topology: kafka1..kafka9, redis1, redis2, core, edge, dc.
host_ip() { # HOST
  case "$1" in
    core) printf '%s.2\n' "$HOSTS_NET" ;;
    kafka[1-9]) printf '%s.%d\n' "$HOSTS_NET" $((10 + ${1#kafka})) ;;
    redis[12]) printf '%s.%d\n' "$HOSTS_NET" $((20 + ${1#redis})) ;;
    edge) printf '%s.31\n' "$HOSTS_NET" ;;
    dc) printf '%s.41\n' "$HOSTS_NET" ;;
    *) die "unknown host: $1" ;;
  esac
}
host_ns() { printf '%s-%s\n' "$HOSTS_PREFIX" "$1"; }  # HOST -> its network namespace
# The address a server on HOST listens on: its namespace's, or 127.0.0.1.
server_host() { # HOST
  if hosts_up; then host_ip "$1"; else printf '%s\n' "$HOST"; fi
}

# HOSTP: the command prefix that runs a command on HOST: `ip netns exec <its namespace>` while
# the topology is up, nothing otherwise. `ip netns exec` execs the command, so a pid recorded
# for "${HOSTP[@]}" CMD is CMD's own.
HOSTP=()
host_prefix() { # HOST
  HOSTP=()
  if hosts_up; then HOSTP=(ip netns exec "$(host_ns "$1")"); fi
}
# Run CMD... (a command, not a function) on HOST.
in_host() { # HOST CMD...
  host_prefix "$1"
  shift
  "${HOSTP[@]}" "$@"
}
# Run FN ARGS... (a function of this file) on HOST.
fn_on() { # HOST FN ARGS...
  local host="$1"
  shift
  if hosts_up; then
    in_host "$host" bash -c 'source "$0" && "$@"' "$DEPLOY_DIR/lib.sh" "$@"
  else
    "$@"
  fi
}
# True if something accepts TCP connections on ADDR:PORT as seen from HOST.
port_open_on() { # HOST ADDR PORT
  in_host "$1" bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$2" "$3" 2>/dev/null
}

# The settings' variables for a client on deploy/hosts.sh's hosts: every broker, Redis through
# the Sentinels (master set "splitee"), Prometheus on the core host.
export_hosts_env() {
  local n="${HOSTS_BROKERS:-3}" i kafka=()
  for ((i = 1; i <= n; i++)); do kafka+=("$(host_ip "kafka$i"):$KAFKA_PORT"); done
  export SPLITEE_KAFKA__BOOTSTRAP
  SPLITEE_KAFKA__BOOTSTRAP="$(IFS=,; printf '%s' "${kafka[*]}")"
  export SPLITEE_REDIS__URL="redis://$(host_ip redis1):$REDIS_PORT/0"
  export SPLITEE_REDIS__SENTINEL="[\"$(host_ip redis1):26379\",\"$(host_ip redis2):26379\",\"$(host_ip core):26379\"]"
  export SPLITEE_REDIS__SENTINEL_MASTER=splitee
  export SPLITEE_OBSERVABILITY__PROMETHEUS_URL="http://$(host_ip core):$PROMETHEUS_PORT"
}

# deploy.brokers of the settings: how many Kafka nodes kafka-start.sh runs (1 without the
# virtual environment, which reads the settings).
kafka_brokers() {
  if [[ -x "$REPO/.venv/bin/python" ]]; then
    "$REPO/.venv/bin/python" -c 'from splitee.settings import Settings; print(Settings().deploy.brokers)'
  else
    printf '1\n'
  fi
}
KAFKA_BROKERS="${KAFKA_BROKERS:-}"   # set by the scripts that need it: $(kafka_brokers)

# Node I of N (1-based): pid/state name, address, ports. One node keeps the single-broker
# names (kafka, var/kafka). Several on this host listen on consecutive ports from
# SPLITEE_KAFKA_PORT and SPLITEE_KAFKA_CONTROLLER_PORT; in namespaces each has its own address
# and the same ports.
kafka_node_name() { # I N
  if (( $2 == 1 )); then printf 'kafka\n'; else printf 'kafka-%d\n' "$1"; fi
}
kafka_node_host() { server_host "kafka$1"; }  # I
kafka_node_port() { # I
  if hosts_up; then printf '%d\n' "$KAFKA_PORT"; else printf '%d\n' $((KAFKA_PORT + $1 - 1)); fi
}
kafka_node_cport() { # I
  if hosts_up; then
    printf '%d\n' "$KAFKA_CONTROLLER_PORT"
  else
    printf '%d\n' $((KAFKA_CONTROLLER_PORT + $1 - 1))
  fi
}
# Nodes kafka-start.sh started (from their pid files; 1 for the single node).
kafka_started_nodes() {
  local f n=0
  for f in "$RUN_DIR"/kafka-[1-9].pid; do [[ -e "$f" ]] && n=$((n + 1)); done
  printf '%d\n' $(( n ? n : 1 ))
}
# host:port of every node, comma-separated (kafka.bootstrap for N nodes).
kafka_bootstrap() { # N
  local i out=()
  for ((i = 1; i <= $1; i++)); do out+=("$(kafka_node_host "$i"):$(kafka_node_port "$i")"); done
  local IFS=,
  printf '%s\n' "${out[*]}"
}

# --- logging ----------------------------------------------------------------
# Short, greppable lines on stderr so stdout stays free for data.
_tag() { printf '[splitee] '; }
log()  { _tag >&2; printf '%s\n' "$*" >&2; }
warn() { _tag >&2; printf 'WARNING: %s\n' "$*" >&2; }
err()  { _tag >&2; printf 'ERROR: %s\n' "$*" >&2; }
die()  { err "$@"; exit 1; }

# --help of a script: its header comment (from line 2 to the first line that is not a comment).
usage() {
  sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"
}

# For scripts that take no argument but --help.
no_args() { # "$@"
  case "${1:-}" in
    -h|--help) usage; exit 0 ;;
    "") ;;
    *) die "unknown argument: $1 (try --help)" ;;
  esac
}

# Path relative to the repo when it is inside it (for short messages).
relpath() {
  case "$1" in
    "$REPO"/*) printf '%s\n' "${1#"$REPO"/}" ;;
    *) printf '%s\n' "$1" ;;
  esac
}

# Print the last lines of a log file, indented, to stderr (used on failures).
show_log_tail() { # FILE [LINES]
  local file="$1" lines="${2:-20}"
  [[ -f "$file" ]] || return 0
  err "last $lines lines of $(relpath "$file"):"
  tail -n "$lines" "$file" | sed 's/^/    /' >&2
}

# Replace @KEY@ placeholders. Usage: render TEMPLATE OUTPUT KEY=VALUE...
# Values must not contain '|' or newlines. The output is written atomically.
render() {
  local tmpl="$1" out="$2" kv key val args=()
  shift 2
  for kv in "$@"; do
    key="${kv%%=*}"; val="${kv#*=}"
    val="${val//\\/\\\\}"; val="${val//&/\\&}"
    args+=(-e "s|@${key}@|${val}|g")
  done
  sed "${args[@]}" "$tmpl" > "$out.tmp"
  if grep -q '@[A-Z_][A-Z_]*@' "$out.tmp"; then
    rm -f "$out.tmp"
    die "unrendered placeholder left in $(relpath "$tmpl"): $(grep -o '@[A-Z_][A-Z_]*@' "$tmpl" | sort -u | tr '\n' ' ')"
  fi
  mv -f "$out.tmp" "$out"
}

# --- locks ----------------------------------------------------------------------
# Serialise concurrent start/stop calls for NAME: holds var/run/NAME.lock on fd 9
# until the calling script exits (start_daemon keeps fd 9 out of the daemon).
take_lock() { # NAME
  mkdir -p "$RUN_DIR"
  exec 9> "$RUN_DIR/$1.lock"
  flock 9
}

# --- pid files ----------------------------------------------------------------
pid_file() { printf '%s/%s.pid\n' "$RUN_DIR" "$1"; }

# PID recorded for NAME (empty if none).
read_pid() {
  local f; f="$(pid_file "$1")"
  [[ -r "$f" ]] && tr -dc '0-9' < "$f"
  return 0
}

# True if the pid file of NAME points to a live process that we started:
# every daemon is started with its cwd under VAR_DIR, which guards against a
# recycled pid belonging to an unrelated process.
is_running() { # NAME
  local pid cwd
  pid="$(read_pid "$1")"
  [[ -n "$pid" ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  # zombies count as dead
  [[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]] || return 1
  cwd="$(readlink "/proc/$pid/cwd" 2>/dev/null)" || return 0  # can't tell: trust the pid file
  [[ "$cwd" == "$VAR_DIR" || "$cwd" == "$VAR_DIR"/* ]]
}

# Start a long-running foreground command in the background, detached from
# the caller's session, stdout+stderr appended to LOGFILE, cwd WORKDIR (must
# be under VAR_DIR), and its pid recorded in var/run/NAME.pid.
# Usage: start_daemon NAME WORKDIR LOGFILE -- CMD [ARGS...]
start_daemon() {
  local name="$1" workdir="$2" logfile="$3" pid
  shift 3
  [[ "${1:-}" == "--" ]] && shift
  mkdir -p "$RUN_DIR" "$(dirname "$logfile")" "$workdir"
  {
    printf '\n===== %s: starting %s: %s\n' "$(date '+%F %T')" "$name" "$*"
  } >> "$logfile"
  # setsid: own session, so a Ctrl-C (or pytest's process-group kill) in the
  # caller does not take the server down. A non-interactive shell's background
  # job is never a process-group leader, so setsid execs in place and $! is
  # the server's own pid.
  # fd 9 is the start scripts' flock: the daemon must not keep holding it.
  (cd "$workdir" && exec setsid "$@" >> "$logfile" 2>&1 < /dev/null 9>&-) &
  pid=$!
  printf '%s\n' "$pid" > "$(pid_file "$name")"
}

# Wait until PID has exited (up to TIMEOUT seconds). Returns 1 on timeout.
wait_pid_exit() { # PID TIMEOUT
  local pid="$1" deadline=$((SECONDS + $2))
  while kill -0 "$pid" 2>/dev/null; do
    [[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" == Z ]] && return 0
    (( SECONDS >= deadline )) && return 1
    sleep 0.2
  done
  return 0
}

# Stop daemon NAME: SIGTERM, wait up to SPLITEE_STOP_TIMEOUT (default 20) s,
# then SIGKILL. Removes the pid file. Returns 0 if it is not running afterwards.
stop_pid() { # NAME [TIMEOUT]
  local name="$1" timeout="${2:-${SPLITEE_STOP_TIMEOUT:-20}}" pid
  pid="$(read_pid "$name")"
  if ! is_running "$name"; then
    rm -f "$(pid_file "$name")"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  if ! wait_pid_exit "$pid" "$timeout"; then
    warn "$name (pid $pid) did not stop within ${timeout}s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    if ! wait_pid_exit "$pid" 5; then
      err "$name (pid $pid) survived SIGKILL"
      return 1
    fi
  fi
  rm -f "$(pid_file "$name")"
  return 0
}

# --- waiting ----------------------------------------------------------------
# True if something accepts TCP connections on HOST:PORT (bash /dev/tcp, no deps).
port_open() { # HOST PORT
  (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

# Run CMD... every 0.25 s until it succeeds, for at most TIMEOUT seconds.
# With NAME given (not "-"), give up early if daemon NAME has died.
# Returns 0 on success, 1 on timeout, 2 if NAME died.
wait_until() { # TIMEOUT NAME CMD [ARGS...]
  local deadline=$((SECONDS + $1)) name="$2"
  shift 2
  until "$@"; do
    if [[ "$name" != - ]] && ! is_running "$name"; then
      return 2
    fi
    (( SECONDS >= deadline )) && return 1
    sleep 0.25
  done
}

wait_port() { # HOST PORT TIMEOUT [NAME]
  wait_until "$3" "${4:--}" port_open "$1" "$2"
}

# True if GET http://HOST:PORT/PATH answers with status 200.
http_ok() { # HOST PORT PATH
  local status
  status="$({
    exec 3<>"/dev/tcp/$1/$2" || exit 1
    printf 'GET %s HTTP/1.0\r\nHost: %s:%s\r\nConnection: close\r\n\r\n' "$3" "$1" "$2" >&3
    IFS=' ' read -r -t 5 _ code _ <&3 && printf '%s' "$code"
  } 2>/dev/null)"
  [[ "$status" == 200 ]]
}

wait_http() { # HOST PORT PATH TIMEOUT [NAME]
  wait_until "$4" "${5:--}" http_ok "$1" "$2" "$3"
}

# Report a failed start: log tail, stop what is left, exit 1.
fail_start() { # NAME LOGFILE TIMEOUT
  local name="$1" logfile="$2" timeout="$3"
  show_log_tail "$logfile"
  if is_running "$name"; then
    stop_pid "$name" 10 || true
    die "$name did not become ready within ${timeout}s; stopped it (log: $(relpath "$logfile"))"
  fi
  rm -f "$(pid_file "$name")"
  die "$name exited during startup (log: $(relpath "$logfile"))"
}

# Refuse to start when a port is already taken by a process that is not ours.
# Prints who holds it (if ss can tell) and a hint.
require_port_free() { # PORT WHAT ENVVAR
  local port="$1" what="$2" envvar="$3" holder=""
  port_open "$HOST" "$port" || return 0
  if command -v ss >/dev/null 2>&1; then
    holder="$(ss -Hltnp "sport = :$port" 2>/dev/null | grep -o 'users:(([^)]*))' | head -n1)"
  fi
  err "port $HOST:$port (needed by $what) is already in use${holder:+ by $holder}."
  err "Stop that process (a system service? e.g. 'systemctl stop prometheus') or pick another port with $envvar=..."
  return 1
}

# --- the server start/stop scripts' common steps -----------------------------------
# deploy/NAME-start.sh, before it starts anything: when NAME already runs, wait (up to
# TIMEOUT s) until READY... succeeds and exit 0 (starts are idempotent), or die with the
# log tail when it never does. Otherwise clear a stale pid file and return.
exit_if_running() { # NAME ADDR LOGFILE TIMEOUT READY...
  local name="$1" addr="$2" logfile="$3" timeout="$4"
  shift 4
  if ! is_running "$name"; then
    rm -f "$(pid_file "$name")"
    return 0
  fi
  if wait_until "$timeout" "$name" "$@"; then
    log "$name already running (pid $(read_pid "$name"), $addr)"
    exit 0
  fi
  show_log_tail "$logfile"
  die "$name (pid $(read_pid "$name")) is not answering on $addr; try deploy/$name-stop.sh"
}

# deploy/NAME-start.sh, after start_daemon: wait until READY... succeeds, else fail_start.
await_ready() { # NAME ADDR LOGFILE TIMEOUT READY...
  local name="$1" addr="$2" logfile="$3" timeout="$4" start=$SECONDS
  shift 4
  wait_until "$timeout" "$name" "$@" || fail_start "$name" "$logfile" "$timeout"
  log "$name started (pid $(read_pid "$name"), $addr, $((SECONDS - start))s, log $(relpath "$logfile"))"
}

# The whole of deploy/NAME-stop.sh: under NAME's lock, GRACEFUL... PID first when given
# (a polite shutdown that may fail), then stop_pid. A no-op when NAME is not running.
stop_server() { # NAME [GRACEFUL...]
  local name="$1" pid
  shift
  take_lock "$name"
  if ! is_running "$name"; then
    rm -f "$(pid_file "$name")"
    log "$name not running"
    return 0
  fi
  pid="$(read_pid "$name")"
  if (( $# )); then "$@" "$pid" || true; fi
  stop_pid "$name" || die "could not stop $name (pid $pid)"
  log "$name stopped (pid $pid)"
}

# Run deploy/SERVER-ACTION.sh for each SERVER, going on past failures; die naming them.
each_server() { # ACTION SERVER...
  local action="$1" svc failed=()
  shift
  for svc in "$@"; do
    "$DEPLOY_DIR/$svc-$action.sh" || failed+=("$svc")
  done
  if (( ${#failed[@]} )); then
    die "failed to $action: ${failed[*]} (see deploy/servers-status.sh and $(relpath "$LOG_DIR")/)"
  fi
}

# --- supervision ---------------------------------------------------------------------
# What dies is restarted: deploy/up.sh runs its long-lived processes under supervise.
RESTART_MAX="${SPLITEE_RESTART_MAX:-5}"          # restarts allowed within RESTART_WINDOW s
RESTART_WINDOW="${SPLITEE_RESTART_WINDOW:-60}"
RESTART_BACKOFF="${SPLITEE_RESTART_BACKOFF:-1}"  # seconds between a death and its restart

# One line per restart ("DATE TIME restart: exit 3"), and a last "gave up" line after a crash
# loop. Truncated when the supervisor starts.
restarts_file() { printf '%s/%s.restarts\n' "$RUN_DIR" "$1"; }

# The supervised process itself has its pid file under var/run/child/ (is_running child/NAME).
child_name() { printf 'child/%s\n' "$1"; }

# Run CMD... and restart it when it exits non-zero or dies by a signal, after RESTART_BACKOFF
# s, recording each restart in restarts_file NAME. A death after RESTART_MAX restarts within
# RESTART_WINDOW s is a crash loop: log it and give up (return 1); exit 78 (EX_CONFIG: a worker
# refusing its configuration, which no restart fixes) gives up at once. A clean exit 0 is not
# restarted (return 0). SIGTERM or SIGINT to the supervisor stops the child (SIGTERM, SIGKILL
# after SPLITEE_STOP_TIMEOUT - 5 s, so before stop_pid would kill the supervisor itself) and
# returns 0 without a restart.
supervise() { # NAME [--] CMD...
  local name="$1" child="" nap="" rc why now t stopping=0 recent=() kept=()
  shift
  [[ "${1:-}" == -- ]] && shift
  local restarts grace=$(( ${SPLITEE_STOP_TIMEOUT:-20} > 6 ? ${SPLITEE_STOP_TIMEOUT:-20} - 5 : 1 ))
  restarts="$(restarts_file "$name")"
  mkdir -p "$RUN_DIR/child"
  : > "$restarts"
  trap 'stopping=1; for p in $child $nap; do kill -TERM "$p" 2>/dev/null; done' TERM INT
  while (( ! stopping )); do
    "$@" &
    child=$!
    printf '%s\n' "$child" > "$(pid_file "$(child_name "$name")")"
    (( stopping )) && kill -TERM "$child" 2>/dev/null   # a stop that came before child=$!
    while :; do
      wait "$child"
      rc=$?
      kill -0 "$child" 2>/dev/null || break   # it has exited; rc is its status
      # wait was cut short by the stop trap, which sent SIGTERM: give the child its grace time
      wait_pid_exit "$child" "$grace" || kill -KILL "$child" 2>/dev/null
    done
    child=""
    rm -f "$(pid_file "$(child_name "$name")")"
    if (( stopping )); then break; fi
    if (( rc == 0 )); then
      log "$name exited cleanly; not restarting it"
      return 0
    fi
    if (( rc == 78 )); then   # EX_CONFIG: a configuration fault, which no restart fixes
      printf '%s gave up: exit 78 (configuration)\n' "$(date '+%F %T')" >> "$restarts"
      err "$name: refused to start (exit 78, configuration: see its log); not restarting it"
      return 1
    fi
    if (( rc > 128 )); then why="killed by signal $((rc - 128))"; else why="exit $rc"; fi
    now="${EPOCHREALTIME//[^0-9]/}"   # microseconds
    kept=()
    for t in "${recent[@]}"; do (( now - t < RESTART_WINDOW * 1000000 )) && kept+=("$t"); done
    recent=("${kept[@]}")
    if (( ${#recent[@]} >= RESTART_MAX )); then
      printf '%s gave up: %s\n' "$(date '+%F %T')" "$why" >> "$restarts"
      err "$name: $why after $RESTART_MAX restarts within ${RESTART_WINDOW}s: crash loop, giving up"
      return 1
    fi
    recent+=("$now")
    printf '%s restart: %s\n' "$(date '+%F %T')" "$why" >> "$restarts"
    warn "$name: $why; restarting in ${RESTART_BACKOFF}s (restart ${#recent[@]} within ${RESTART_WINDOW}s)"
    sleep "$RESTART_BACKOFF" &
    nap=$!
    wait "$nap"
    nap=""
  done
  log "$name stopped (supervisor got a stop signal)"
  return 0
}

# start_daemon with CMD... under supervise: the pid file holds the supervisor's pid.
start_supervised() { # NAME WORKDIR LOGFILE -- CMD...
  local name="$1" workdir="$2" logfile="$3"
  shift 3
  [[ "${1:-}" == -- ]] && shift
  # shellcheck disable=SC2016  # $1 is expanded by the inner bash
  start_daemon "$name" "$workdir" "$logfile" -- \
    bash -c 'source "$1" && shift && supervise "$@"' supervise "$DEPLOY_DIR/lib.sh" "$name" -- "$@"
}

# Stop a supervisor and its child; a child left behind by a killed supervisor is stopped too.
stop_supervised() { # NAME
  local ok=0
  stop_pid "$1" || ok=1
  stop_pid "$(child_name "$1")" || ok=1
  return "$ok"
}

# Names of the processes deploy/up.sh supervises (workers, evaluator, exporter) that have a
# pid file: the supervisor's, or only the child's when its supervisor was killed.
supervised_names() {
  local f
  for f in "$RUN_DIR"/{edge-,cloud-,evaluator,exporter}*.pid "$RUN_DIR"/child/*.pid; do
    [[ -e "$f" ]] && basename "$f" .pid
  done | sort -u
}

# How many times supervise restarted NAME, plus ", gave up" after a crash loop ("-" if never
# supervised).
restart_count() { # NAME
  local f; f="$(restarts_file "$1")"
  if [[ ! -f "$f" ]]; then printf -- '-\n'; return 0; fi
  printf '%s%s\n' "$(grep -c ' restart: ' "$f")" "$(grep -q ' gave up: ' "$f" && printf ', gave up')"
}
