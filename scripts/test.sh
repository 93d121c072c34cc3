#!/usr/bin/env bash
# The test suite: unit, API, integration on the real RabbitMQ, and the five services as processes.
# Installs the project first if needed and makes sure a RabbitMQ broker answers on 127.0.0.1:5672.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/pytest ] || bash scripts/install.sh
bash scripts/ensure-rabbitmq.sh
exec .venv/bin/python -m pytest -q "$@"
