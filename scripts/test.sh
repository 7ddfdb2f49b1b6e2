#!/usr/bin/env bash
# The project's test command: installs what it needs into .venv, then checks the lock file,
# lint, types and tests. Tests that need PostgreSQL use CDS_TEST_POSTGRES_URL; when it is unset
# and the machine's PostgreSQL answers on 127.0.0.1:5432 (database "test"), that one is used.
set -euo pipefail
cd "$(dirname "$0")/.."

# pip's own lines that say what it installs; "already satisfied" lines are left out.
installs() { grep -E "^(Collecting|Successfully installed|ERROR)" || true; }

echo "test.sh: .venv: pip (latest), then the runtime dependencies at the versions of requirements.lock"
echo "test.sh: then this package (editable) with its dev tools (pytest, ruff, mypy, hypothesis,"
echo "test.sh: schemathesis, playwright, hatchling, uv): about 45 s on a fresh checkout"
python3 -m venv .venv
.venv/bin/python -m pip install --upgrade --progress-bar off pip 2>&1 | installs
# The versions a deployment runs (the Docker image installs the same file), so the tests run them.
.venv/bin/python -m pip install --progress-bar off --no-deps -r requirements.lock 2>&1 | installs
.venv/bin/python -m pip install --progress-bar off -e '.[dev]' 2>&1 | installs
.venv/bin/python -c "import cds_service, pytest, ruff, mypy" # fail here, clearly, if the install did
echo "test.sh: installed"

bash scripts/lock.sh --check  # requirements.lock still what pyproject.toml gives

# The browser test (tests/test_browser.py) needs Debian's chromium; install it where we may.
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "installing chromium for the browser test"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1 || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  } || echo "chromium could not be installed: the browser test will say so"
fi

if [ -z "${CDS_TEST_POSTGRES_URL:-}" ]; then
  local_pg="postgresql+psycopg://postgres@127.0.0.1:5432/test"
  if .venv/bin/python -c "import psycopg; psycopg.connect('postgresql://postgres@127.0.0.1:5432/test', connect_timeout=3).close()" 2>/dev/null; then
    export CDS_TEST_POSTGRES_URL="$local_pg"
  fi
fi
echo "PostgreSQL for tests: ${CDS_TEST_POSTGRES_URL:-none (those tests are skipped)}"

.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/pytest -p no:cacheprovider "$@"
