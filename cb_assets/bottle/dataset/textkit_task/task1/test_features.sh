#!/bin/bash
# test_features.sh <feature_number|all> [feature_number...]: run each feature's tests on the base
# plus combined.patch (every gold change at once), in the copy setup.sh makes.

set -e

TASK_DIR="$(cd "$(dirname "$0")" && pwd)"
REPO_DIR="$TASK_DIR/textkit-task1"
COMBINED_PATCH="$TASK_DIR/combined.patch"

[ $# -eq 0 ] && { echo "Usage: $0 <feature_number|all> [feature_number...]"; exit 1; }
[ -d "$REPO_DIR" ] || (cd "$TASK_DIR" && bash setup.sh)

reset_repo() {
    git -C "$REPO_DIR" reset -q --hard HEAD
    git -C "$REPO_DIR" clean -qfdx
}
trap reset_repo EXIT

test_feature() {
    local n=$1
    echo "=== Testing Feature $n ==="
    reset_repo
    # Called as an `if` condition, where set -e is off: stop on a patch that does not apply.
    git -C "$REPO_DIR" apply "$COMBINED_PATCH" || return 1
    git -C "$REPO_DIR" apply "$TASK_DIR/feature$n/tests.patch" || return 1
    (cd "$REPO_DIR" && python3 -m pytest -q -p no:cacheprovider tests/)
}

if [ "$1" = "all" ]; then features=(1 2 3 4); else features=("$@"); fi

passed=()
failed=()
for n in "${features[@]}"; do
    if test_feature "$n"; then passed+=("$n"); else failed+=("$n"); fi
done

echo "PASSED: ${passed[*]}"
if [ ${#failed[@]} -gt 0 ]; then
    echo "FAILED: ${failed[*]}"
    exit 1
fi
echo "All tested features passed!"
