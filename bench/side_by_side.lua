-- bench/side_by_side.lua: wrk POSTs the job body given in $SBS_BODY (JSON) and, when done, prints its
-- figures as one line "SBS_JSON {...}" for bench/side_by_side.py (latencies in microseconds).
wrk.method = "POST"
wrk.body = os.getenv("SBS_BODY")
wrk.headers["Content-Type"] = "application/json"

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'SBS_JSON {"requests": %.0f, "duration_us": %.0f, "status_errors": %.0f, "connect_errors": %.0f, '
      .. '"read_errors": %.0f, "write_errors": %.0f, "timeouts": %.0f, "p50_us": %.0f, "p90_us": %.0f, '
      .. '"p99_us": %.0f, "max_us": %.0f}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
