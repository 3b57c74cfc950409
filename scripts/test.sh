#!/usr/bin/env bash
# The README's test command: installs what the suite needs on a fresh machine, then runs it.
# System parts (headless Chromium and its driver for the MLflow UI test, PostgreSQL for multi-worker
# searches, git for `mlflow run`) come from apt when missing; where they cannot be installed, the run
# stops here and names what to install, instead of skipping those tests.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
{ command -v chromium >/dev/null || command -v chromium-browser >/dev/null; } || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
{ ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || command -v pg_ctl >/dev/null; } || missing+=(postgresql)
command -v git >/dev/null || missing+=(git)
if [ ${#missing[@]} -gt 0 ] && command -v apt-get >/dev/null; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo -n"
  echo "test.sh: installing ${missing[*]} (apt-get)" >&2
  if { $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive \
         apt-get install -y -qq "${missing[@]}"; } >/dev/null; then
    missing=()
  fi
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "test.sh: the tests need ${missing[*]}; install them (Debian/Ubuntu: sudo apt-get install -y ${missing[*]}), then run again" >&2
  exit 1
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q -e '.[test]'
# Two workers (one per core on the CI machine), each taking whole test files so that a file's servers start once.
exec .venv/bin/python -m pytest -q -n 2 --dist loadfile "$@"
