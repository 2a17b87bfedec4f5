# shellcheck shell=bash
# Helpers shared by deploy/install.sh, deploy/quickstart.sh and deploy/test.sh.
# Source it; it defines functions and BERTH_REPO (the repository root) only.

# shellcheck disable=SC2034  # used by the scripts that source this file
BERTH_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# nats-server lives in /usr/sbin, which some root shells (su without -, CI
# runners) leave off PATH.
case ":$PATH:" in
  *:/usr/sbin:*) ;;
  *) PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin" ;;
esac
export PATH

# Messages go to stderr so that command output (berth get ...) stays clean.
say()  { printf '%s\n' "$*" >&2; }
step() { printf '==> %s\n' "$*" >&2; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die()  { printf 'error: %s\n' "$*" >&2; exit 1; }

# require_root WHAT: fail unless we are root.
require_root() {
  if [[ "$(id -u)" != 0 ]]; then
    die "$1 must run as root (it installs Debian packages and starts containers); run it again with sudo"
  fi
}

# run_quiet LABEL CMD...: run CMD with its output captured; on failure print
# the last lines of that output and the path of the full log, then fail.
run_quiet() {
  local label="$1"; shift
  local log
  log="$(mktemp "${TMPDIR:-/tmp}/berth-${label//[^a-zA-Z0-9]/-}.XXXXXX.log")"
  local rc=0
  "$@" >"$log" 2>&1 </dev/null || rc=$?
  if [[ $rc == 0 ]]; then
    rm -f "$log"
    return 0
  fi
  say "error: $label failed (exit $rc): $*"
  say "---- last 40 lines of $log ----"
  tail -n 40 "$log" >&2
  say "----"
  exit "$rc"
}

# version_ge A B: true when dotted version A >= B.
version_ge() {
  [[ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n 1)" == "$2" ]]
}
