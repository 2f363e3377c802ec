-- wrk script: optional list of paths to cycle through (for the Trac full page load: the page
-- and every /chrome/ resource it references, in order), and a done() that prints one JSON line
-- with the percentiles wrk's --latency does not give (p99.9) and the error counts.
-- Usage: wrk ... -s report.lua http://HOST:PORT/ [-- /path1 /path2 ...]
local paths = {}
local i = 0

function init(args)
  for _, p in ipairs(args) do
    paths[#paths + 1] = p
  end
end

function request()
  if #paths == 0 then
    return wrk.format(nil)
  end
  i = i % #paths + 1
  return wrk.format("GET", paths[i])
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH-JSON {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d, ' ..
    '"p50_us": %d, "p90_us": %d, "p99_us": %d, "p999_us": %d, "max_us": %d, "mean_us": %.1f}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean))
end
