#!/usr/bin/env bash
# The test suite: unit, API, integration on the real RabbitMQ, and the five services as processes.
# Installs the project first if needed and makes sure a RabbitMQ broker answers on 127.0.0.1:5672.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/pytest ] || bash scripts/install.sh
bash scripts/ensure-rabbitmq.sh
bash scripts/ensure-sandbox.sh   # the sandbox tests need it: no sandbox, no green run
bash scripts/ensure-chromium.sh  # the browser tests drive Debian's Chromium: none, no green run
# a real Slurm cluster for tests/integration/test_slurm.py; in CI it must come up, elsewhere those
# tests skip when it cannot
if [ -z "${CIRASA_TEST_SLURM_URL:-}" ]; then
  if slurm_env=$(bash scripts/slurm.sh up >&2 && bash scripts/slurm.sh env); then
    eval "$slurm_env"
  elif [ -n "${CI:-}" ]; then
    echo "slurm: the test cluster did not come up (see above); in CI that fails the run" >&2
    exit 1
  else
    echo "slurm: the test cluster did not come up (see above); the Slurm tests will be skipped" >&2
  fi
fi
exec .venv/bin/python -m pytest -q "$@"
