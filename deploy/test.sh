#!/usr/bin/env bash
# Runs Berth's whole test suite on this machine, as root:
#
#   deploy/test.sh [MOCHA ARGS...]        e.g. deploy/test.sh --grep 'leader'
#
# It installs what is missing (deploy/install.sh), then runs `npm test`, which
# builds and runs mocha. Nothing needs to be started by hand: the test harness
# starts its own etcd, NATS and registry on free loopback ports with temp data
# dirs and stops them by PID. A running quickstart cluster is neither used nor
# disturbed. Exits with mocha's status and ends with a one-line summary.
set -euo pipefail
# shellcheck source=deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

case "${1:-}" in
  -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac

require_root "deploy/test.sh"
cd "$BERTH_REPO"
started=$SECONDS

# Tests must not pick up settings meant for a real cluster (BERTH_CONTROLLER,
# BERTH_NATS, BERTH_ROOT, ...); BERTH_TEST_* settings are for the tests.
while read -r var; do unset "$var"; done < <(compgen -e | grep '^BERTH_' | grep -v '^BERTH_TEST_' || true)

# `npm test` builds, so only install here.
"$BERTH_REPO/deploy/install.sh" --no-build

mocha_args=("$@")
# Colours on a terminal only (mocha turns them on whenever CI is set).
if [[ -t 1 ]]; then mocha_args=(--color "${mocha_args[@]}"); else mocha_args=(--no-color "${mocha_args[@]}"); fi

out="$(mktemp "${TMPDIR:-/tmp}/berth-test.XXXXXX.log")"
trap 'rm -f "$out"' EXIT

step "running the test suite (npm test)"
rc=0
npm test --silent -- "${mocha_args[@]}" </dev/null 2>&1 | tee "$out" || rc=$?

# Mocha's spec reporter ends with "N passing", "N pending", "N failing".
plain="$(sed 's/\x1b\[[0-9;]*m//g' "$out")"
count() { { grep -E "^[[:space:]]*[0-9]+ $1" <<<"$plain" || true; } | tail -n 1 | awk '{print $1}'; }
passing="$(count passing)"
failing="$(count failing)"
pending="$(count pending)"

elapsed=$((SECONDS - started))
echo
if [[ -z "$passing" && -z "$failing" ]]; then
  say "error: mocha printed no summary (exit status $rc): the build or the test runner failed before any test ran; see the output above"
  ((rc != 0)) || rc=1
  exit "$rc"
fi
echo "mocha: ${passing:-0} passed, ${failing:-0} failed, ${pending:-0} skipped"
echo "test suite finished in $((elapsed / 60))m$((elapsed % 60))s with exit status $rc"
if [[ "${passing:-0}" == 0 && "${failing:-0}" == 0 ]]; then
  say "error: no test ran"
  ((rc != 0)) || rc=1
fi
exit "$rc"
