-- Fairness: count which worker process answered each request (the app
-- answers "pid=N"). Each wrk thread counts in its own Lua state; done()
-- runs in the main state and merges the threads' tables.

local threads = {}

setup = function(thread)
  table.insert(threads, thread)
end

init = function(args)
  pids = {}
  unparsed = 0
end

response = function(status, headers, body)
  local pid = body and string.match(body, "pid=(%d+)")
  if pid then
    pids[pid] = (pids[pid] or 0) + 1
  else
    unparsed = unparsed + 1
  end
end

extra_done = function(summary, latency, requests)
  local total, bad = {}, 0
  for _, thread in ipairs(threads) do
    for pid, n in pairs(thread:get("pids")) do
      total[pid] = (total[pid] or 0) + n
    end
    bad = bad + thread:get("unparsed")
  end
  local parts = {}
  for pid, n in pairs(total) do
    table.insert(parts, string.format('"%s": %d', pid, n))
  end
  io.write('PIDJSON {"counts": {' .. table.concat(parts, ", ") .. '}, "unparsed": ' .. bad .. '}\n')
end
