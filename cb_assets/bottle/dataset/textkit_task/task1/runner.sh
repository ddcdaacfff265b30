#!/bin/bash
# runner.sh <tests.patch> [feature.patch]: apply the patches found in the patches folder to the
# base and run the tests. The exit code is pytest's, and its summary line ("N passed", "N failed")
# is what `cooperbench eval` parses. The folders can be moved so a test can run this off-image.

set -e

REPO_DIR="${CB_TASK_REPO:-/workspace/repo}"
PATCH_DIR="${CB_TASK_PATCHES:-/patches}"

cleanup() {
    echo "Cleaning up repository..."
    if git rev-parse --is-inside-work-tree > /dev/null 2>&1; then
        git reset --hard HEAD 2>/dev/null || true
        git clean -fdx 2>/dev/null || true
        echo "Repository cleaned."
    fi
}

TEST_PATCH="$1"
FEATURE_PATCH="$2"

if [[ -z "$TEST_PATCH" ]]; then
    echo "Usage: docker run -v \$(pwd):/patches <image> <test_patch> [feature_patch]"
    exit 1
fi

cd "$REPO_DIR"
# Only once inside the repo: the trap resets whatever repository the shell is in.
trap cleanup EXIT INT TERM

echo "Ensuring clean repository state..."
git reset --hard HEAD
git clean -fdx

apply_patch() {
    local patch="$PATCH_DIR/$1"
    if [[ ! -f "$patch" ]]; then
        echo "Error: patch not found at $patch"
        exit 1
    fi
    git apply --ignore-whitespace --ignore-space-change "$patch" || git apply --3way "$patch"
}

if [[ -n "$FEATURE_PATCH" ]]; then
    echo "Applying feature patch: $FEATURE_PATCH"
    apply_patch "$FEATURE_PATCH"
    echo "Feature patch applied successfully."
fi

echo "Applying test patch: $TEST_PATCH"
apply_patch "$TEST_PATCH"
echo "Test patch applied successfully."

# The package is pure Python and imported from the work tree (python3 -m puts the current
# folder on sys.path): the image has no pip and no network, so nothing is installed here.
echo "Running tests..."
set +e
timeout 300 python3 -m pytest -q -p no:cacheprovider tests/
status=$?
set -e

echo "Test execution completed!"
exit "$status"
