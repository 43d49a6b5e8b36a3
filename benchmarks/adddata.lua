-- wrk script for AddData: every request carries new, unique ChunkIDs.
-- Arguments (after `--`): chunks per request (1 = one JSON object, N > 1 = an array of N),
-- a ChunkID prefix unique to this load run, and how many answers to wait for before
-- stopping (0 = run for wrk's -d duration).
-- At the end it prints one line "WRK-RESULT {json}" with exact counts and latencies, and
-- how many answers were 429 (the executor's queue was full).

local batch = 1
local prefix = "c"
local limit = 0
local counter = 0
local answered = 0
-- A global, not a local: done() runs in wrk's main Lua state and reads it from each
-- thread's state with thread:get().
rejected = 0
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  batch = tonumber(args[1]) or 1
  prefix = args[2] or "c"
  limit = tonumber(args[3]) or 0
end

function response(status, headers, body)
  answered = answered + 1
  if status == 429 then
    rejected = rejected + 1
  end
  if limit > 0 and answered == limit then
    -- wrk's main thread sleeps for the whole -d duration: tell the parent, which
    -- interrupts it (SIGINT ends wrk early and still prints the summary).
    wrk.thread:stop()
    io.write("WRK-LIMIT\n")
    io.flush()
  end
end

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

local function chunk()
  counter = counter + 1
  return string.format('{"ChunkID":"%s-%d","RawData":{"i":%d}}', prefix, counter, counter)
end

function request()
  local body
  if batch == 1 then
    body = chunk()
  else
    local parts = {}
    for i = 1, batch do
      parts[i] = chunk()
    end
    body = "[" .. table.concat(parts, ",") .. "]"
  end
  return wrk.format(nil, nil, nil, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  local refused = 0
  for _, thread in ipairs(threads) do
    refused = refused + thread:get("rejected")
  end
  io.write(string.format(
    'WRK-RESULT {"requests":%d,"duration_us":%d,"connect_errors":%d,"read_errors":%d,' ..
    '"write_errors":%d,"status_errors":%d,"timeouts":%d,"p50_us":%d,"p90_us":%d,' ..
    '"p99_us":%d,"max_us":%d,"rejected":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    refused))
end
