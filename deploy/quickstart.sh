#!/usr/bin/env bash
# A single-node Berth cluster on this machine, on loopback only.
#
#   deploy/quickstart.sh [up]       install what is missing, build, start what is not
#                                   running, push the demo images, apply examples/hello.yaml
#                                   (unless workload hello exists: yours is left as it is)
#   deploy/quickstart.sh status     what is running, the nodes and the workloads
#   deploy/quickstart.sh down       stop everything the quickstart started (data is kept)
#   deploy/quickstart.sh down --purge   ... and delete its state dir
#
# Everything lives under BERTH_QUICKSTART_DIR (default /var/lib/berth-quickstart):
# pid files in run/, logs in logs/, data in etcd/, nats/, registry/, agent/,
# container runtime state in runtime/.
# Ports (loopback only; below 32768 so they never collide with the ephemeral
# ports that tests and outgoing connections use), each overridable:
#   etcd       127.0.0.1:23790 (peer 23800)  BERTH_QS_ETCD_PORT, BERTH_QS_ETCD_PEER_PORT
#   NATS       127.0.0.1:24222 (monitor 28222) BERTH_QS_NATS_PORT, BERTH_QS_NATS_MONITOR_PORT
#   registry   127.0.0.1:25000               BERTH_QS_REGISTRY_PORT
#   controller 127.0.0.1:7070                BERTH_QS_CONTROLLER_PORT
#   agent API  127.0.0.1:7071                BERTH_QS_AGENT_PORT
# The agent's node name is the host name (BERTH_QS_NODE to override).
# `up` puts the `berth` command on PATH: a link BERTH_QS_LINK (default
# /usr/local/bin/berth) to this checkout's dist/cmd/berth.cjs, unless
# something else is there already; `down --purge` removes the link it made.
# Demo images pushed to the registry: BERTH_QS_IMAGES (default busybox,whalesay).
set -euo pipefail
# shellcheck source=deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

STATE="${BERTH_QUICKSTART_DIR:-/var/lib/berth-quickstart}"
ETCD_PORT="${BERTH_QS_ETCD_PORT:-23790}"
ETCD_PEER_PORT="${BERTH_QS_ETCD_PEER_PORT:-23800}"
NATS_PORT="${BERTH_QS_NATS_PORT:-24222}"
NATS_MONITOR_PORT="${BERTH_QS_NATS_MONITOR_PORT:-28222}"
REGISTRY_PORT="${BERTH_QS_REGISTRY_PORT:-25000}"
CONTROLLER_PORT="${BERTH_QS_CONTROLLER_PORT:-7070}"
AGENT_PORT="${BERTH_QS_AGENT_PORT:-7071}"
NODE="${BERTH_QS_NODE:-$(hostname -s 2>/dev/null | tr '[:upper:]' '[:lower:]' | tr -c 'a-z0-9-\n' '-')}"
NODE="${NODE:-node1}"
WAIT_SECONDS="${BERTH_QS_WAIT_SECONDS:-60}"            # for each service to be ready
WORKLOAD_WAIT_SECONDS="${BERTH_QS_WORKLOAD_WAIT_SECONDS:-15}"  # for hello's replicas
DEMO_IMAGES="${BERTH_QS_IMAGES:-busybox,whalesay}"

ETCD_URL="http://127.0.0.1:${ETCD_PORT}"
NATS_URL="nats://127.0.0.1:${NATS_PORT}"
REGISTRY="127.0.0.1:${REGISTRY_PORT}"
CONTROLLER="127.0.0.1:${CONTROLLER_PORT}"
BERTH_JS="$BERTH_REPO/dist/cmd/berth.cjs"
BERTH_LINK="${BERTH_QS_LINK:-/usr/local/bin/berth}"

# Start order; `down` stops in reverse.
SERVICES=(etcd nats registry controller agent)

usage() { sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; }

berth() { BERTH_CONTROLLER="$CONTROLLER" node "$BERTH_JS" "$@"; }

pid_file() { printf '%s/run/%s.pid' "$STATE" "$1"; }
log_file() { printf '%s/logs/%s.log' "$STATE" "$1"; }

# What the command line of each service's process must contain, so that a pid
# file left behind after a reboot never matches some unrelated process.
cmd_marker() {
  case "$1" in
    etcd) printf '%s' "--data-dir${STATE}/etcd" ;;
    nats) printf '%s' "-sd${STATE}/nats" ;;
    registry) printf '%s' "${STATE}/registry/config.yml" ;;
    controller) printf '%s' "controller--etcd${ETCD_URL}" ;;
    agent) printf '%s' "agent--controller${CONTROLLER}" ;;
  esac
}

service_port() {
  case "$1" in
    etcd) printf '%s %s' "$ETCD_PORT" "$ETCD_PEER_PORT" ;;
    nats) printf '%s %s' "$NATS_PORT" "$NATS_MONITOR_PORT" ;;
    registry) printf '%s' "$REGISTRY_PORT" ;;
    controller) printf '%s' "$CONTROLLER_PORT" ;;
    agent) printf '%s' "$AGENT_PORT" ;;
  esac
}

# alive PID: the process exists and is not a zombie. Services outlive this
# script, so their parent is PID 1, which may be slow to reap them (there may
# be no real init, e.g. in a container or VM sandbox).
alive() {
  kill -0 "$1" 2>/dev/null || return 1
  local stat
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  stat="${stat##*) }"
  [[ "${stat:0:1}" != Z ]]
}

# running NAME: prints the pid and succeeds when the service is alive.
running() {
  local f pid cmdline
  f="$(pid_file "$1")"
  [[ -f "$f" ]] || return 1
  pid="$(cat "$f" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  alive "$pid" || return 1
  cmdline="$(tr -d '\0' <"/proc/$pid/cmdline" 2>/dev/null || true)"
  [[ "$cmdline" == *"$(cmd_marker "$1")"* ]] || return 1
  printf '%s' "$pid"
}

port_in_use() { [[ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]]; }

check_ports_free() {
  local name="$1" port
  for port in $(service_port "$name"); do
    if port_in_use "$port"; then
      say "error: cannot start $name: 127.0.0.1:$port is already in use:"
      ss -Hltnp "sport = :$port" >&2 || true
      die "stop that program, or pick other ports (see: $0 --help)"
    fi
  done
}

# launch NAME CMD...: start CMD in its own session, detached from this
# terminal, with its output appended to the service's log.
launch() {
  local name="$1"; shift
  local log
  log="$(log_file "$name")"
  printf '\n---- %s: starting: %s\n' "$(date -u +%FT%TZ)" "$*" >>"$log"
  setsid "$@" >>"$log" 2>&1 </dev/null &
  printf '%s\n' "$!" >"$(pid_file "$name")"
}

# wait_ready NAME CHECK...: poll CHECK until it succeeds; on timeout or if the
# process died, print the log tail and fail.
wait_ready() {
  local name="$1"; shift
  local deadline=$((SECONDS + WAIT_SECONDS)) pid
  pid="$(cat "$(pid_file "$name")")"
  while ((SECONDS < deadline)); do
    # Only liveness here: until exec completes, the command line is still bash's.
    if ! alive "$pid"; then
      say "error: $name exited while starting; last lines of $(log_file "$name"):"
      tail -n 30 "$(log_file "$name")" >&2
      rm -f "$(pid_file "$name")"
      exit 1
    fi
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  say "error: $name did not become ready within ${WAIT_SECONDS}s; last lines of $(log_file "$name"):"
  tail -n 30 "$(log_file "$name")" >&2
  die "$name is still running (pid $pid); see the log above, then: $0 down"
}

tcp_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

registry_config() {
  cat <<EOF
version: 0.1
log:
  level: info
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: ${STATE}/registry/data
  delete:
    enabled: true
http:
  addr: ${REGISTRY}
EOF
}

start_service() {
  local name="$1"
  case "$name" in
    etcd)
      launch etcd etcd --name quickstart --data-dir "$STATE/etcd" \
        --listen-client-urls "$ETCD_URL" --advertise-client-urls "$ETCD_URL" \
        --listen-peer-urls "http://127.0.0.1:${ETCD_PEER_PORT}" \
        --initial-advertise-peer-urls "http://127.0.0.1:${ETCD_PEER_PORT}" \
        --initial-cluster "quickstart=http://127.0.0.1:${ETCD_PEER_PORT}" \
        --logger zap --log-level warn
      wait_ready etcd curl -fsS --max-time 2 "$ETCD_URL/health"
      ;;
    nats)
      launch nats nats-server -a 127.0.0.1 -p "$NATS_PORT" -m "$NATS_MONITOR_PORT" \
        -js -sd "$STATE/nats"
      wait_ready nats curl -fsS --max-time 2 "http://127.0.0.1:${NATS_MONITOR_PORT}/healthz"
      ;;
    registry)
      mkdir -p "$STATE/registry/data"
      registry_config >"$STATE/registry/config.yml"
      launch registry docker-registry serve "$STATE/registry/config.yml"
      wait_ready registry curl -fsS --max-time 2 "http://${REGISTRY}/v2/"
      ;;
    controller)
      launch controller node "$BERTH_JS" controller --etcd "$ETCD_URL" --nats "$NATS_URL" \
        --listen "$CONTROLLER" --default-registry "$REGISTRY"
      wait_ready controller tcp_open "$CONTROLLER_PORT"
      ;;
    agent)
      mkdir -p "$STATE/agent"
      launch agent node --initial-old-space-size=64 "$BERTH_JS" agent --controller "$CONTROLLER" --nats "$NATS_URL" \
        --node "$NODE" --root "$STATE/agent" --runtime-root "$STATE/runtime" \
        --listen "127.0.0.1:${AGENT_PORT}"
      wait_ready agent node_ready
      ;;
  esac
}

# The agent is ready once the controller lists its node as Ready.
node_ready() {
  local st
  st="$(berth get nodes "$NODE" 2>/dev/null | awk -v n="$NODE" 'NR > 1 && $1 == n {print $2}')"
  [[ "$st" == Ready* ]]
}

image_present() {
  curl -fsS --max-time 5 "http://${REGISTRY}/v2/$1/tags/list" 2>/dev/null | grep -q '"latest"'
}

seed_images() {
  local missing=() img
  IFS=',' read -r -a want <<<"$DEMO_IMAGES"
  for img in "${want[@]}"; do
    image_present "$img" || missing+=("$img")
  done
  if ((${#missing[@]} == 0)); then
    say "demo images: already in the registry (${DEMO_IMAGES})"
    return 0
  fi
  step "pushing demo images to ${REGISTRY}: ${missing[*]}"
  local joined
  joined="$(IFS=','; printf '%s' "${missing[*]}")"
  run_quiet "seeding demo images" node "$BERTH_REPO/dist/test/harness/seed.js" --registry "$REGISTRY" --images "$joined"
}

# wait_workload NAME: give the workload up to BERTH_QS_WORKLOAD_WAIT_SECONDS to report
# all replicas ready; say so either way (not being ready is not an error here:
# the cluster is up, and `berth get workloads` shows the rest later).
wait_workload() {
  local name="$1" ready="" deadline=$((SECONDS + WORKLOAD_WAIT_SECONDS))
  while ((SECONDS < deadline)); do
    ready="$(berth get workloads 2>/dev/null | awk -v n="$name" 'NR > 1 && $1 == n {print $2}')"
    if [[ "$ready" =~ ^([0-9]+)/([0-9]+)$ ]] && ((BASH_REMATCH[1] == BASH_REMATCH[2])); then
      if ((BASH_REMATCH[2] == 0)); then say "$name: scaled to 0 replicas"; else say "$name: ${ready} replicas ready"; fi
      return 0
    fi
    sleep 1
  done
  warn "$name has ${ready:-no} replicas ready after ${WORKLOAD_WAIT_SECONDS}s; check again with \`berth get workloads\` and see $(log_file agent)"
}

# The berth command on PATH: a link to this checkout's entry point (executable, `#!/usr/bin/env node`).
link_command() {
  if [[ -L "$BERTH_LINK" && "$(readlink "$BERTH_LINK")" == "$BERTH_JS" ]]; then return 0; fi
  if [[ -e "$BERTH_LINK" || -L "$BERTH_LINK" ]]; then
    warn "$BERTH_LINK is already there and is not this checkout's berth: left as it is (run node $BERTH_JS instead)"
    return 0
  fi
  mkdir -p "$(dirname "$BERTH_LINK")"
  ln -s "$BERTH_JS" "$BERTH_LINK"
  say "berth command: $BERTH_LINK -> $BERTH_JS"
}

unlink_command() {
  if [[ -L "$BERTH_LINK" && "$(readlink "$BERTH_LINK")" == "$BERTH_JS" ]]; then
    rm -f "$BERTH_LINK"
    say "removed the berth command $BERTH_LINK"
  fi
}

cmd_up() {
  require_root "deploy/quickstart.sh"
  # BERTH_QS_SKIP_INSTALL=1: the checkout is already installed and built (the
  # quickstart's own test runs it from inside the test suite).
  if [[ "${BERTH_QS_SKIP_INSTALL:-0}" != 1 ]]; then "$BERTH_REPO/deploy/install.sh"; fi
  [[ -f "$BERTH_JS" ]] || die "$BERTH_JS is missing: build Berth first (deploy/install.sh)"
  mkdir -p "$STATE/run" "$STATE/logs"
  link_command

  local name pid started=0
  for name in "${SERVICES[@]}"; do
    if pid="$(running "$name")"; then
      say "$name: already running (pid $pid)"
      continue
    fi
    rm -f "$(pid_file "$name")"
    check_ports_free "$name"
    step "starting $name"
    start_service "$name"
    say "$name: started (pid $(cat "$(pid_file "$name")"), log $(log_file "$name"))"
    started=$((started + 1))
  done
  if ((started == 0)); then say "all services were already running"; fi

  seed_images
  # Run again, leave hello as the user left it (scaled, edited): applying the
  # file would quietly undo that. A deleted hello is applied again.
  if berth get workload hello >/dev/null 2>&1; then
    say "workload hello: already there, left as it is (berth apply -f examples/hello.yaml resets it)"
  else
    step "berth apply -f examples/hello.yaml"
    berth apply -f "$BERTH_REPO/examples/hello.yaml"
  fi
  wait_workload hello
  echo
  step "berth get nodes"
  berth get nodes
  echo
  step "berth get workloads"
  berth get workloads
  local export_line=''
  [[ "$CONTROLLER" == 127.0.0.1:7070 ]] || export_line="  export BERTH_CONTROLLER=$CONTROLLER"$'\n'
  cat <<EOF

The cluster is up (state and logs in $STATE). Next, from $BERTH_REPO:
${export_line}  berth get workloads                # the berth command is $BERTH_LINK (or: node $BERTH_JS ...)
  berth run whalesay cowsay "Hello, berth"
  berth apply -f examples/hello.yaml
  berth --help
  $0 status       # what is running
  $0 down         # stop it all (add --purge to delete $STATE)
EOF
}

cmd_status() {
  local name pid any=0
  for name in "${SERVICES[@]}"; do
    if pid="$(running "$name")"; then
      printf '%-11s running (pid %s)   log %s\n' "$name" "$pid" "$(log_file "$name")"
      any=1
    else
      printf '%-11s stopped\n' "$name"
    fi
  done
  if running controller >/dev/null && [[ -f "$BERTH_JS" ]]; then
    echo
    berth get nodes || true
    echo
    berth get workloads || true
  fi
  ((any == 1)) || say "nothing is running; start with: $0"
}

stop_service() {
  local name="$1" pid i
  if ! pid="$(running "$name")"; then
    rm -f "$(pid_file "$name")"
    return 0
  fi
  say "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 40; i++)); do
    alive "$pid" || break
    sleep 0.25
  done
  if alive "$pid"; then
    say "$name did not stop within 10s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 20; i++)); do
      alive "$pid" || break
      sleep 0.25
    done
  fi
  rm -f "$(pid_file "$name")"
}

# Containers outlive the agent (a shim per container supervises each one), so
# `down` stops them itself with berth-runtime, over every runtime state dir
# under the state dir (the agent's --runtime-root is $STATE/runtime; a runtime
# state dir is a dir of per-container dirs that hold shim.pid).
# ACTION is "stop" (keeps their state and logs) or "delete" (removes them).
containers() {
  local action="$1" root dir id n=0
  local runtime_cli="$BERTH_REPO/dist/agent/runtime-cli/main.js"
  [[ -d "$STATE" ]] || return 0
  while read -r root; do
    [[ -n "$root" ]] || continue
    for dir in "$root"/*/; do
      [[ -f "$dir/state.json" ]] || continue
      id="$(basename "$dir")"
      if [[ ! -f "$runtime_cli" ]]; then
        warn "cannot $action container $id: $runtime_cli is missing (build Berth first)"
        continue
      fi
      n=$((n + 1))
      if [[ "$action" == stop ]]; then
        node "$runtime_cli" --root "$root" stop --time 10 "$id" >/dev/null 2>&1 \
          || node "$runtime_cli" --root "$root" state "$id" 2>/dev/null | grep -q '"stopped"' \
          || warn "could not stop container $id (runtime root $root)"
      else
        node "$runtime_cli" --root "$root" delete --force "$id" >/dev/null 2>&1 \
          || warn "could not delete container $id (runtime root $root)"
      fi
    done
  done < <(find "$STATE" -xdev -name shim.pid -printf '%h\n' 2>/dev/null | xargs -r -n1 dirname | sort -u)
  if ((n > 0)); then
    if [[ "$action" == stop ]]; then say "stopped $n container(s)"; else say "deleted $n container(s)"; fi
  fi
}

purge() {
  [[ -n "$STATE" && "$STATE" != "/" && -d "$STATE" ]] || return 0
  # Unmount anything the agent left mounted under the state dir, deepest first.
  local mnt
  while read -r mnt; do
    [[ -n "$mnt" ]] || continue
    umount "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || warn "could not unmount $mnt"
  done < <(findmnt -rn -o TARGET | awk -v p="$STATE/" 'index($0, p) == 1' | sort -r)
  rm -rf --one-file-system "$STATE"
  say "deleted $STATE"
}

cmd_down() {
  local purge_too=0 arg i name
  for arg in "$@"; do
    case "$arg" in
      --purge) purge_too=1 ;;
      *) die "down: unknown argument \"$arg\" (expected --purge)" ;;
    esac
  done
  require_root "deploy/quickstart.sh down"
  for ((i = ${#SERVICES[@]} - 1; i >= 0; i--)); do
    name="${SERVICES[$i]}"
    stop_service "$name"
  done
  if ((purge_too == 1)); then containers delete; else containers stop; fi
  say "the quickstart cluster is stopped"
  if ((purge_too == 1)); then purge; unlink_command; else say "data kept in $STATE (delete it with: $0 down --purge)"; fi
}

main() {
  case "${1:-up}" in
    up) shift || true; (($# == 0)) || die "up takes no arguments"; cmd_up ;;
    status) cmd_status ;;
    down) shift; cmd_down "$@" ;;
    -h|--help|help) usage ;;
    *) die "unknown command \"$1\" (expected up, status, down or --help)" ;;
  esac
}

# Sourcing this file (for tests) defines the functions without running anything.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then main "$@"; fi
