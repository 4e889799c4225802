#!/usr/bin/env bash
# Runs every package's tests with colcon, prints the per-test results and one closing count line,
# and exits non-zero on any failure. Called by `./rlt test` after the set-up.
#
# ROS 2 discovery is kept on loopback (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST). Where the caller
# may create a network namespace (root), the whole run also goes into a fresh one that has only
# `lo`, so no test can reach another machine; RLT_TEST_NETNS=off disables that.
# Extra arguments go to `colcon test` (e.g. --packages-select rlt_core).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck disable=SC1091
. "$root/env.sh"
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST

colcon --log-base log test-result --delete-yes >/dev/null

isolate=()
if [ "${RLT_TEST_NETNS:-auto}" != off ] && [ "$(id -u)" -eq 0 ] && unshare -n true 2>/dev/null; then
  isolate=(unshare -n bash -c 'ip link set lo up && ip link set lo multicast on && exec "$@"' --)
  echo "[test] running in a private network namespace (loopback only)"
fi

set +e
"${isolate[@]}" colcon --log-base log test --executor sequential --return-code-on-test-failure \
  --event-handlers console_direct+ status- "$@"
rc=$?
set -e

summary=$(colcon --log-base log test-result --verbose) || rc=${rc:-1}
echo "$summary"
line=$(echo "$summary" | grep -E '^Summary: ' | tail -n 1)
total=$(echo "$line" | sed -nE 's/.* ([0-9]+) tests?[ ,].*/\1/p')
errors=$(echo "$line" | sed -nE 's/.* ([0-9]+) errors?[ ,].*/\1/p')
failures=$(echo "$line" | sed -nE 's/.* ([0-9]+) failures?[ ,].*/\1/p')
skipped=$(echo "$line" | sed -nE 's/.* ([0-9]+) skipped.*/\1/p')
total=${total:-0} errors=${errors:-0} failures=${failures:-0} skipped=${skipped:-0}
failed=$((errors + failures))
passed=$((total - failed - skipped))
if [ "$total" -eq 0 ]; then
  echo "[test] error: no test ran" >&2
  rc=1
fi
[ "$failed" -eq 0 ] || rc=1
echo "tests: $passed passed, $failed failed, $skipped skipped"
exit "$rc"
