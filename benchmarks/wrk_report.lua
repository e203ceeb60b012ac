-- wrk script used for every HTTP workload of the benchmark harness.
--
-- BENCH_BODY_BYTES=N (environment) turns the requests into POSTs of an N-byte body.
-- done() prints one line "BENCH_JSON {...}" with the totals and latency percentiles
-- (microseconds), which the harness parses instead of scraping wrk's text output.

local body_bytes = tonumber(os.getenv("BENCH_BODY_BYTES") or "0")
if body_bytes and body_bytes > 0 then
   wrk.method = "POST"
   wrk.body = string.rep("a", body_bytes)
   wrk.headers["Content-Type"] = "application/octet-stream"
end

function done(summary, latency, requests)
   local e = summary.errors
   local parts = {
      string.format('"requests":%d', summary.requests),
      string.format('"duration_us":%d', summary.duration),
      string.format('"bytes":%d', summary.bytes),
      string.format('"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}',
                    e.connect, e.read, e.write, e.status, e.timeout),
      string.format('"latency_us":{"mean":%.2f,"stdev":%.2f,"max":%d,"p50":%d,"p75":%d,"p90":%d,"p99":%d}',
                    latency.mean, latency.stdev, latency.max,
                    latency:percentile(50), latency:percentile(75),
                    latency:percentile(90), latency:percentile(99)),
   }
   io.write("BENCH_JSON {" .. table.concat(parts, ",") .. "}\n")
end
