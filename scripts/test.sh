#!/usr/bin/env bash
# The test command of README.md: creates .venv, installs tao-flows with its test extras plus
# TAO Core 7.3.0 (without its heavy dependencies; only the spec-conformance tests import it) at the versions
# of constraints.txt, runs ruff, then pytest (tests/test_install.py checks the venv matches the constraints).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
. .venv/bin/activate
install() {  # quiet unless it fails
  if ! pip install --disable-pip-version-check "$@" > .venv/pip-install.log 2>&1; then
    cat .venv/pip-install.log >&2
    echo "pip install $* failed" >&2
    exit 1
  fi
}
# Exactly the versions in constraints.txt (the set CI tests; README's install uses it too).
install -c constraints.txt -e '.[test]'
install -c constraints.txt omegaconf requests
install -c constraints.txt --no-deps nvidia-tao-core==7.3.0
ruff check --quiet . || { echo "ruff found problems (see above)" >&2; exit 1; }
set +e
python -m pytest -q -p no:cacheprovider "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi
exit "$rc"
