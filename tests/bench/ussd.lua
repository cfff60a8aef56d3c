-- wrk script for scripts/bench ussd: every request dials *123# as a new USSD
-- session (a fresh sessionId), so each one is a whole engine hop: route,
-- step to the language menu, save with compare-and-set expecting no session
-- (the blind START: one Redis round trip, gateway/engine/README.md), render
-- and answer. wrk cannot tell which connection a response belongs to, so
-- continuing a session across requests is not possible here. Requests are
-- unsigned: scripts/bench's config sets [ussd] allow_unsigned = 1.
local counter = 0
local thread_id = 0

function setup(thread)
  thread_id = thread_id + 1
  thread:set("tid", thread_id)
end

function request()
  counter = counter + 1
  local body = string.format(
    "sessionId=bench-%d-%d&serviceCode=%%2A123%%23&phoneNumber=%%2B8613800000001&text=",
    tid, counter)
  return wrk.format("POST", "/ussd",
    {["Content-Type"] = "application/x-www-form-urlencoded"}, body)
end

function done(summary, latency, requests)
  io.write(string.format("RESULT rps=%.0f p50_us=%d p99_us=%d errors=%d non2xx=%d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99),
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status))
end
