#!/bin/bash
# Setup script for textkit task 1: four small helpers for a tiny string library.
#
# The base is the repo/ folder next to this script (this project's own code, not an upstream
# pull request), committed as-is; nothing is cloned or installed, so this runs offline.

set -e

TASK_DIR="$(cd "$(dirname "$0")" && pwd)"
REPO_NAME="textkit-task1"

if [ ! -d "$REPO_NAME" ]; then
    echo "Creating repository from $TASK_DIR/repo..."
    cp -r "$TASK_DIR/repo" "$REPO_NAME"
    cd "$REPO_NAME"
    git init -q
    git add -A
    git -c user.email=task@bottle.local -c user.name=bottle commit -q -m base
else
    echo "Repository directory already exists. Using existing copy."
    cd "$REPO_NAME"
fi

git checkout -q -B "textkit_task1"
git restore .
git restore --staged .
