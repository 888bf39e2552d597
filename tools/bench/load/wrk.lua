-- wrk script of the benchmark. With a data file (wrk ... -s wrk.lua URL -- data.txt: lines
-- "token <access token>" and "product <id>") every request places a 2-line order, the customers and
-- products in turn; without one, wrk sends its plain request (GET of the URL). Either way done()
-- prints one JSON line after wrk's own report, which tools/bench/drivers.py reads.

local tokens, products = {}, {}
local counter = 0

function init(args)
  if not args[1] then
    return
  end
  for line in io.lines(args[1]) do
    local kind, value = line:match("^(%a+) (.+)$")
    if kind == "token" then
      tokens[#tokens + 1] = value
    elseif kind == "product" then
      products[#products + 1] = value
    end
  end
  -- The threads start at different customers so they do not move in step.
  counter = math.random(0, #tokens - 1)
end

function request()
  if #tokens == 0 then
    return wrk.request()
  end
  counter = counter + 1
  local a = products[(counter % #products) + 1]
  local b = products[((counter + 1) % #products) + 1]
  local body = '{"items": [{"product_id": "' .. a .. '", "quantity": 1}, {"product_id": "' .. b .. '", "quantity": 1}]}'
  local headers = {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. tokens[(counter % #tokens) + 1],
  }
  return wrk.format("POST", "/api/orders", headers, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\n{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "mean_us": %.1f, '
      .. '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.mean,
    e.connect, e.read, e.write, e.status, e.timeout
  ))
end
