-- wrk script for bench/webhook.py: cycles through pre-signed Twilio webhook requests.
--
-- Usage: wrk -t T -c C -d D -s bench/webhook.lua <url> -- <requests file> <T>
-- The file has one request per line, "<X-Twilio-Signature><TAB><form body>", signed in Python
-- over the exact body. Thread i of T sends lines i, i+T, i+2T, ... so no two threads share a
-- MessageSid; a thread that runs out starts its slice again and counts a wrap (a wrap re-sends
-- MessageSids: bench/webhook.py sizes the file so that the service run never wraps).
-- done() prints one line "WEBHOOK_BENCH {json}" with the exact figures (latency in microseconds).

local threads = {}
local counter = 0

function setup(thread)
   thread:set("id", counter)
   table.insert(threads, thread)
   counter = counter + 1
end

function init(args)
   local path, nthreads = args[1], tonumber(args[2])
   reqs = {}
   local i = 0
   for line in io.lines(path) do
      if i % nthreads == id then
         local tab = line:find("\t", 1, true)
         reqs[#reqs + 1] = wrk.format("POST", wrk.path, {
            ["Host"] = wrk.headers["Host"],
            ["Content-Type"] = "application/x-www-form-urlencoded",
            ["User-Agent"] = "TwilioProxy/1.1",
            ["Accept"] = "*/*",
            ["X-Twilio-Signature"] = line:sub(1, tab - 1),
         }, line:sub(tab + 1))
      end
      i = i + 1
   end
   if #reqs == 0 then
      error("no requests for thread " .. id .. " in " .. path)
   end
   n, sent, wraps = 0, 0, 0
end

function request()
   n = n + 1
   if n > #reqs then
      n, wraps = 1, wraps + 1
   end
   sent = sent + 1
   return reqs[n]
end

function done(summary, latency, requests)
   local sent_total, wraps_total = 0, 0
   for _, t in ipairs(threads) do
      sent_total = sent_total + t:get("sent")
      wraps_total = wraps_total + t:get("wraps")
   end
   local e = summary.errors
   io.write(string.format(
      'WEBHOOK_BENCH {"requests": %d, "duration_us": %d, "bytes": %d, "sent": %d, ' ..
      '"wraps": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f, ' ..
      '"non2xx": %d, "connect": %d, "read": %d, "write": %d, "timeout": %d}\n',
      summary.requests, summary.duration, summary.bytes, sent_total, wraps_total,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
      latency.mean, e.status, e.connect, e.read, e.write, e.timeout))
end
