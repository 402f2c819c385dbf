-- wrk script: a create / get / list mix against orchestratord's REST API.
-- Each connection cycles: 1 create (unique name), 5 gets of a workload it created, 1 list.
-- Usage: wrk -t2 -c200 -d20s --latency -s bench/rest-mix.lua http://127.0.0.1:PORT

local counter = 0
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  step = 0
  created = 0
  prefix = string.format("b%d-%d", id, math.random(1, 1000000))
end

local body_fmt = '{"name":"%s","replicas":0,"containers":[{"name":"main","image":"bench/app:1","resources":{"cpu_millicores":10,"memory_mb":8}}]}'

function request()
  step = step + 1
  local phase = step % 7
  if phase == 1 then
    created = created + 1
    local name = string.format("%s-%d", prefix, created)
    return wrk.format("POST", "/api/v1/workloads", {["Content-Type"] = "application/json"}, string.format(body_fmt, name))
  elseif phase == 0 then
    return wrk.format("GET", "/api/v1/workloads?limit=20")
  else
    local n = created
    if n < 1 then n = 1 end
    return wrk.format("GET", string.format("/api/v1/workloads/%s-%d", prefix, n))
  end
end

function done(summary, latency, requests)
  local errors = summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  io.write(string.format("requests %d, %.0f req/s, errors %d (status %d)\n",
    summary.requests, summary.requests / (summary.duration / 1e6), errors, summary.errors.status))
  for _, p in pairs({50, 90, 99, 99.9}) do
    io.write(string.format("p%g %.2f ms\n", p, latency:percentile(p) / 1000))
  end
end
