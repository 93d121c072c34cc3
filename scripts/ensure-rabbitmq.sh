#!/usr/bin/env bash
# Make sure a RabbitMQ broker answers on 127.0.0.1:5672: install it from Debian and start it if needed.
set -euo pipefail
port_open() { (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; }
if port_open; then echo "rabbitmq: already answering on :5672"; exit 0; fi
if ! command -v rabbitmq-server >/dev/null 2>&1; then
  echo "rabbitmq: installing from Debian"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server >/dev/null
fi
echo "rabbitmq: starting"
rabbitmq-server -detached || true
for _ in $(seq 1 120); do
  if port_open; then echo "rabbitmq: up"; exit 0; fi
  sleep 0.5
done
echo "rabbitmq: did not start within 60 s" >&2
exit 1
