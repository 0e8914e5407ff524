-- The events in the stream KEYS[1]: each entry's `n` (1 for a version 1
-- entry, which has none), summed inside Redis so the events themselves are
-- not sent back. Used by the benchmarks that count what the tracker wrote.
local total, from = 0, '-'
while true do
  local entries = redis.call('XRANGE', KEYS[1], from, '+', 'COUNT', 100)
  if #entries == 0 then return total end
  for _, entry in ipairs(entries) do
    local n, fields = 1, entry[2]
    for j = 1, #fields, 2 do
      if fields[j] == 'n' then n = tonumber(fields[j + 1]) end
    end
    total = total + n
  end
  from = '(' .. entries[#entries][1]
end
