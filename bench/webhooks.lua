-- The load generator of bench/webhooks.py, a wrk 4.1 script (wrk embeds LuaJIT, whose ffi is used below).
--
--   wrk -t 1 -c C -d D --timeout T --latency -H 'X-Gitlab-Token: ...' ... -s bench/webhooks.lua URL \
--       -- TEMPLATE FIRST N PREFIX
--
-- TEMPLATE is a file holding a Merge Request Hook body with three markers: @@IID@@ (the merge request
-- iid), @@ID@@ (its id, 100,000 + iid) and @@SHA@@ (its head commit, PREFIX then the iid in 32 hex
-- digits). The N deliveries are merge requests FIRST .. FIRST + N - 1, one POST each with the -H
-- headers and three ids of its own (X-Gitlab-Webhook-UUID, X-Gitlab-Event-UUID, Idempotency-Key), so
-- no two are duplicates. All N requests are built in init(), before anything is sent.
--
-- Exactly N are sent: delay() hands out N sends across the connections and parks a connection that
-- asks for more. The N-th response stops the thread and sends SIGINT to wrk itself, which otherwise
-- sleeps for the whole -d duration before it reports. done() prints one line, "webhooks-result "
-- followed by JSON: responses, statuses (count by HTTP status), seconds (first send to last
-- response), cpu_seconds (wrk's CPU time meanwhile), started (CLOCK_MONOTONIC seconds of the first
-- send, the clock of Python's time.monotonic), latency_us (p50, p90, p99, max: from writing a request
-- to reading its whole response) and wrk's socket errors. It counts in one thread: run it with -t 1.

local ffi = require("ffi")

ffi.cdef([[
  typedef struct { long tv_sec; long tv_nsec; } webhooks_timespec;
  int clock_gettime(int clock_id, webhooks_timespec *tp);
  int getpid(void);
  int kill(int pid, int sig);
]])

local CLOCK_MONOTONIC = 1
local SIGINT = 2
local PARKED_MS = 24 * 3600 * 1000 -- a connection past the N sends waits longer than any run
local timespec = ffi.new("webhooks_timespec")

local function monotonic()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, timespec)
  return tonumber(timespec.tv_sec) + tonumber(timespec.tv_nsec) / 1e9
end

-- setup and done run in wrk's main Lua state --------------------------------------------------------

local threads = {}

function setup(thread)
  threads[#threads + 1] = thread
end

function done(summary, latency, _requests)
  if #threads ~= 1 then
    io.stderr:write("bench/webhooks.lua counts the deliveries in one thread: run wrk with -t 1\n")
    os.exit(2)
  end
  local thread = threads[1]
  local statuses = {}
  for status, n in pairs(thread:get("statuses")) do
    statuses[#statuses + 1] = string.format('"%s": %d', status, n)
  end
  local started, finished = thread:get("started"), thread:get("finished")
  local cpu_seconds = thread:get("cpu_seconds")
  local errors = summary.errors
  io.write(
    "webhooks-result ",
    string.format('{"responses": %d, ', thread:get("responses")),
    string.format('"statuses": {%s}, ', table.concat(statuses, ", ")),
    string.format('"seconds": %.6f, ', started and finished and finished - started or 0),
    string.format('"cpu_seconds": %s, ', cpu_seconds and string.format("%.6f", cpu_seconds) or "null"),
    string.format('"started": %.6f, ', started or 0),
    string.format(
      '"latency_us": {"p50": %d, "p90": %d, "p99": %d, "max": %d}, ',
      latency:percentile(50),
      latency:percentile(90),
      latency:percentile(99),
      latency.max
    ),
    string.format(
      '"errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d}}\n',
      errors.connect,
      errors.read,
      errors.write,
      errors.timeout
    )
  )
end

-- the rest runs in the thread's Lua state ------------------------------------------------------------

local requests = {}
local count = 0
local handed_out = 0 -- sends granted by delay()
local sent = 0 -- requests returned by request()
local cpu_started

responses = 0
statuses = {}
started = nil
finished = nil
cpu_seconds = nil

local function uuid(prefix, kind, iid)
  return string.format("%s-%04x-4000-8000-%012x", prefix, kind, iid)
end

function init(args)
  local path, first, prefix = args[1], tonumber(args[2]), args[4]
  count = tonumber(args[3])
  local file = assert(io.open(path, "rb"))
  local template = file:read("*a")
  file:close()
  for iid = first, first + count - 1 do
    local values = { IID = tostring(iid), ID = tostring(100000 + iid) }
    values.SHA = prefix .. string.format("%032x", iid)
    local body = template:gsub("@@(%u+)@@", values)
    local headers = {}
    for name, value in pairs(wrk.headers) do
      headers[name] = value
    end
    headers["X-Gitlab-Webhook-UUID"] = uuid(prefix, 1, iid)
    headers["X-Gitlab-Event-UUID"] = uuid(prefix, 2, iid)
    headers["Idempotency-Key"] = uuid(prefix, 3, iid)
    requests[#requests + 1] = wrk.format("POST", nil, headers, body)
  end
end

function delay()
  if handed_out < count then
    handed_out = handed_out + 1
    return 0
  end
  return PARKED_MS
end

function request()
  if handed_out == 0 then
    -- wrk's own check of the request, before the thread runs: a send always asks delay() first.
    return requests[1]
  end
  sent = sent + 1
  if sent == 1 then
    started = monotonic()
    cpu_started = os.clock()
  end
  -- Only a reconnect after a socket error asks for more than N (without delay()); wrk reports it.
  return requests[math.min(sent, count)]
end

function response(status, _headers, _body)
  finished = monotonic()
  responses = responses + 1
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
  if responses == count then
    cpu_seconds = os.clock() - cpu_started
    wrk.thread:stop()
    ffi.C.kill(ffi.C.getpid(), SIGINT)
  end
end
