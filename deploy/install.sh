#!/usr/bin/env bash
# Installs what Berth needs to build, test and run on Debian 12, then builds it.
# Idempotent and quiet: it only does (and only prints) what is missing.
#
#   deploy/install.sh [--no-build]
#
#   1. Debian packages (apt-get update only when a package or the lists are missing)
#   2. Node.js >= 20.19 must already be on PATH (Debian 12's nodejs is 18: too old)
#   3. npm ci, when node_modules is missing or package-lock.json changed
#   4. npm run build, when a source file changed since the last build
#      (skipped with --no-build; `npm test` builds by itself)
set -euo pipefail
# shellcheck source=deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

build=1
for arg in "$@"; do
  case "$arg" in
    --no-build) build=0 ;;
    -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "install.sh: unknown argument \"$arg\" (expected --no-build or --help)" ;;
  esac
done

require_root "deploy/install.sh"
cd "$BERTH_REPO"

# ---------------------------------------------------------------- Debian packages
# What each is for:
#   etcd-server etcd-client         desired state store (+ etcdctl for operators)
#   nats-server                     heartbeats, status and events bus
#   docker-registry                 local OCI registry (quickstart, tests)
#   protobuf-compiler               `npm run proto` and the proto drift test
#   busybox-static skopeo umoci     building and pushing the demo/test images
#   iproute2 nftables iptables      container networking
#   containernetworking-plugins     CNI bridge/host-local/portmap
#   apache2-utils                   htpasswd, for registry auth tests
#   build-essential                 the agent's small C helper
#   ca-certificates curl tini       TLS roots, readiness probes, an init for containers
#   crun runc                       peer runtimes used by side-by-side benchmarks and tests
PACKAGES=(
  etcd-server etcd-client nats-server docker-registry protobuf-compiler
  busybox-static skopeo umoci iproute2 nftables iptables apache2-utils
  build-essential ca-certificates curl tini containernetworking-plugins
  crun runc
)

missing_packages() {
  local p status
  for p in "${PACKAGES[@]}"; do
    status="$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)"
    [[ "$status" == "install ok installed" ]] || printf '%s\n' "$p"
  done
}

apt_lists_usable() {
  # Usable when every missing package has an install candidate and the lists
  # are less than a day old (older lists may point at files the mirror dropped).
  local p cand
  [[ -n "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mmin -1440 -print -quit 2>/dev/null)" ]] || return 1
  for p in "$@"; do
    cand="$(apt-cache policy "$p" 2>/dev/null | awk '/Candidate:/ {print $2}')"
    [[ -n "$cand" && "$cand" != "(none)" ]] || return 1
  done
}

apt_install() {
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

mapfile -t missing < <(missing_packages)
if ((${#missing[@]} > 0)); then
  command -v apt-get >/dev/null || die "missing packages (${missing[*]}) and no apt-get: Berth's installer supports Debian 12 only"
  step "installing Debian packages: ${missing[*]}"
  updated=0
  if ! apt_lists_usable "${missing[@]}"; then
    run_quiet "apt-get update" apt-get update -q
    updated=1
  fi
  if ! apt_install "${missing[@]}" >/tmp/berth-apt-install.log 2>&1 </dev/null; then
    if ((updated == 0)); then
      run_quiet "apt-get update" apt-get update -q
      run_quiet "apt-get install" apt_install "${missing[@]}"
    else
      say "---- last 40 lines of /tmp/berth-apt-install.log ----"
      tail -n 40 /tmp/berth-apt-install.log >&2
      die "apt-get install of ${missing[*]} failed (full log: /tmp/berth-apt-install.log)"
    fi
  fi
  rm -f /tmp/berth-apt-install.log
  mapfile -t still < <(missing_packages)
  ((${#still[@]} == 0)) || die "these Debian packages are still not installed: ${still[*]}"
fi

# The demo and test images are built from Debian packages fetched with
# `apt-get download`, which needs the package lists even when nothing above
# was missing (a fresh image may ship with empty lists).
if [[ -z "$(apt-cache policy cowsay 2>/dev/null | awk '/Candidate:/ && $2 != "(none)" {print $2}')" ]]; then
  step "fetching Debian package lists (apt-get update)"
  run_quiet "apt-get update" apt-get update -q
fi

# ---------------------------------------------------------------- Node.js
NODE_MIN=20.19.0
node_help="install Node.js ${NODE_MIN} or newer (20 LTS or 22 LTS) from nodejs.org's binaries or NodeSource's Debian repository, put node and npm on PATH, then run this again. Debian 12's own nodejs package is version 18, which is too old."
command -v node >/dev/null || die "node was not found on PATH: $node_help"
command -v npm >/dev/null || die "npm was not found on PATH: $node_help"
node_version="$(node --version)"
node_version="${node_version#v}"
version_ge "$node_version" "$NODE_MIN" || die "node ${node_version} at $(command -v node) is too old, Berth needs >= ${NODE_MIN}: $node_help"

# ---------------------------------------------------------------- npm dependencies
stamp_file=node_modules/.berth-install-stamp
want_stamp="$(sha256sum package-lock.json | cut -d' ' -f1) node-${node_version}"
if [[ ! -d node_modules || ! -f "$stamp_file" || "$(cat "$stamp_file")" != "$want_stamp" ]]; then
  step "installing npm dependencies (npm ci)"
  run_quiet "npm ci" npm ci --no-audit --no-fund --loglevel=error
  printf '%s\n' "$want_stamp" >"$stamp_file"
fi

# ---------------------------------------------------------------- build
if ((build == 1)); then
  build_stamp=dist/.berth-build-stamp
  needs_build=0
  if [[ ! -f dist/cmd/berth.cjs || ! -f "$build_stamp" ]]; then
    needs_build=1
  elif [[ -n "$(find . \( -path ./node_modules -o -path ./dist -o -path './.build-*' -o -path ./.git \) -prune -o \
      -newer "$build_stamp" -type f \( -name '*.ts' -o -name '*.c' -o -name '*.h' -o -name 'Makefile' \
      -o -name '*.json' -o -name '*.mjs' -o -name '*.proto' \) -print -quit)" ]]; then
    needs_build=1
  fi
  if ((needs_build == 1)); then
    step "building Berth (npm run build)"
    # Stamp the time the build started, so an edit made during it is rebuilt next time.
    new_stamp="$(mktemp)"
    run_quiet "npm run build" npm run build
    mv -f "$new_stamp" "$build_stamp"
  fi
fi
