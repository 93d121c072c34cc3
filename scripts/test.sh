#!/usr/bin/env bash
# The test suite: unit, API, integration on the real RabbitMQ, and the five services as processes.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m pytest -q "$@"
