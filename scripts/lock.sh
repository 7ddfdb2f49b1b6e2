#!/usr/bin/env bash
# requirements.lock: the exact version (and sha256 of every file) of each runtime dependency
# that the Docker image installs, resolved by uv from pyproject.toml for Python 3.11 on any
# platform. One command:
#   bash scripts/lock.sh           write requirements.lock (after changing dependencies)
#   bash scripts/lock.sh --check   exit 1 if requirements.lock is not what pyproject.toml gives
# The pins already in the file are kept while they still satisfy pyproject.toml (uv prefers
# them), so --check fails on a changed dependency list, not on a new upstream release. To move
# every pin to the newest allowed release: bash scripts/lock.sh --upgrade.
set -euo pipefail
cd "$(dirname "$0")/.."

uv=".venv/bin/uv"
[ -x "$uv" ] || uv="uv"
compile=("$uv" pip compile pyproject.toml --quiet --universal --python-version 3.11
  --generate-hashes --custom-compile-command "bash scripts/lock.sh")

case "${1:-}" in
  --check)
    fresh=$(mktemp)
    trap 'rm -f "$fresh"' EXIT
    cp requirements.lock "$fresh"
    "${compile[@]}" --output-file "$fresh"
    if ! diff -u requirements.lock "$fresh"; then
      echo "requirements.lock is not current for pyproject.toml: run bash scripts/lock.sh" >&2
      exit 1
    fi
    echo "requirements.lock is current"
    ;;
  --upgrade) "${compile[@]}" --upgrade --output-file requirements.lock ;;
  "") "${compile[@]}" --output-file requirements.lock ;;
  *) echo "usage: bash scripts/lock.sh [--check | --upgrade]" >&2; exit 2 ;;
esac
