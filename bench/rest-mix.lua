-- wrk script: a create / get / list mix against orchestratord's REST API.
-- Out of every 10 requests: 1 create (a new, unique name), 8 gets of one of the SEEDS workloads that
-- bench/rest-load.sh created before the run (seed-0 .. seed-N-1), 1 list of a page of 20.
-- The weights can be changed with MIX=create,get,list (e.g. MIX=0,1,0 for gets only).
-- Usage: wrk -t2 -c200 -d20s --latency -s bench/rest-mix.lua http://127.0.0.1:PORT

local threads = {}
function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  seeds = tonumber(os.getenv("SEEDS") or "100")
  local mix = os.getenv("MIX") or "1,8,1"
  local c, g, l = mix:match("(%d+),(%d+),(%d+)")
  w_create, w_get, w_list = tonumber(c), tonumber(g), tonumber(l)
  total = w_create + w_get + w_list
  step = 0
  created = 0
  prefix = string.format("b%d-%d", id, math.random(1, 1000000000))
end

local body_fmt = '{"name":"%s","replicas":0,"containers":[{"name":"main","image":"bench/app:1","resources":{"cpu_millicores":10,"memory_mb":8}}]}'

function request()
  step = step + 1
  local slot = step % total
  if slot < w_create then
    created = created + 1
    return wrk.format("POST", "/api/v1/workloads", {["Content-Type"] = "application/json"},
      string.format(body_fmt, string.format("%s-%d", prefix, created)))
  elseif slot < w_create + w_get then
    return wrk.format("GET", string.format("/api/v1/workloads/seed-%d", math.random(0, seeds - 1)))
  else
    return wrk.format("GET", "/api/v1/workloads?limit=20")
  end
end

function done(summary, latency, requests)
  io.write(string.format("requests %d, %.0f req/s, non-2xx %d, socket errors %d\n",
    summary.requests, summary.requests / (summary.duration / 1e6), summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
  for _, p in pairs({50, 90, 99, 99.9}) do
    io.write(string.format("p%g %.2f ms\n", p, latency:percentile(p) / 1000))
  end
end
