"""The Lua scripts the Redis sinks run server-side: ``WRITE_SCRIPT`` (one node: a chunk of funds,
each fund's hash and history entry together) and ``NODE_SCRIPT`` (Redis Cluster: independent
writes of one node's keys). Both are built from the same helpers (``_COMMON``): how the
arguments carry field names, when the latest-value hash may be replaced, and what a refused
history entry held. Their SHA1s are what ``EVALSHA`` calls.
"""

from __future__ import annotations

import hashlib

#: ``refusal``'s codes for a refused history entry (the boundary's entry was there already).
KEPT = 0  # the entry there is kept: unflagged
KEPT_FLAGGED = 1  # the entry there is kept: flagged recovering, as ours is
SUPERSEDED = 2  # the entry there was flagged and ours is not: ours replaced it

#: Lua shared by both scripts: the field-name lists of the arguments (each as its length and its
#: names; ``tsat[s]`` / ``flagsat[s]``: the position of ``ts`` / ``flags`` in list ``s``, or 0),
#: the "hash older than this boundary" test on ``ts`` texts (non-negative integers: a shorter text
#: is smaller), and what a refused history entry held (``refusal``).
#:
#: *Whole values supersede flagged ones* (docs/scaling.md): a value whose ``flags`` carry
#: ``"recovering"`` comes from a book that may miss ticks. The latest-value hash is replaced by a
#: newer boundary, or by an unflagged value of the same boundary over a flagged one
#: (``replaces``). A history entry refused because the boundary is there already is replaced when
#: the entry there is flagged and ours is not (``supersede``: the entry and any later ones --
#: written by the same recovering replica -- are deleted, the stream's last ID is set back, ours
#: is added and the later ones are added again, so the stream keeps its order). ``refusal``
#: returns the refused entry's ``iopv`` (false when only a later entry is there) and a code:
#: 0 the entry is kept (unflagged), 1 kept (flagged, and ours is too), 2 superseded by ours.
_COMMON = """
local function field_lists(a, count)
  local lists, tsat, flagsat = {}, {}, {}
  for s = 1, count do
    local n = tonumber(ARGV[a])
    lists[s] = {unpack(ARGV, a + 1, a + n)}
    tsat[s] = 0
    flagsat[s] = 0
    for j = 1, n do
      if lists[s][j] == 'ts' then tsat[s] = j end
      if lists[s][j] == 'flags' then flagsat[s] = j end
    end
    a = a + 1 + n
  end
  return lists, tsat, flagsat, a
end
local function older(cur, ts)
  return (not cur) or #cur < #ts or (#cur == #ts and cur < ts)
end
local function recovering(flags)
  return type(flags) == 'string' and string.find(flags, '"recovering"', 1, true) ~= nil
end
local function replaces(cur, ts, flagged)
  return older(cur[1], ts) or (cur[1] == ts and (not flagged) and recovering(cur[2]))
end
local function peer_entry(key, id)
  local peer = redis.call('XRANGE', key, id, id)
  if #peer == 0 then return false, false end
  local fv, value, flagged = peer[1][2], '', false
  for j = 1, #fv, 2 do
    if fv[j] == 'iopv' then value = fv[j + 1] end
    if fv[j] == 'flags' then flagged = recovering(fv[j + 1]) end
  end
  return value, flagged
end
local function supersede(key, id, maxlen, args, n)
  local later = redis.call('XRANGE', key, '(' .. id, '+')
  local ids = {id}
  for i = 1, #later do ids[#ids + 1] = later[i][1] end
  redis.call('XDEL', key, unpack(ids))
  local previous = redis.call('XREVRANGE', key, '(' .. id, '-', 'COUNT', 1)
  local top = '0-0'
  if #previous > 0 then top = previous[1][1] end
  redis.call('XSETID', key, top, 'MAXDELETEDID', top)
  redis.call('XADD', key, 'MAXLEN', '~', maxlen, id, unpack(args, 1, 2 * n))
  for i = 1, #later do redis.call('XADD', key, later[i][1], unpack(later[i][2])) end
end
local function refusal(key, id, maxlen, args, n, flagged)
  local value, peer_flagged = peer_entry(key, id)
  if value and peer_flagged and not flagged then
    supersede(key, id, maxlen, args, n)
    return value, 2
  end
  if peer_flagged then return value, 1 end
  return value, 0
end
"""

#: One chunk of a publication, server-side. KEYS: per fund its hash and its history stream, then
#: the state key when ARGV[2] is "1". ARGV: the history maxlen; that flag; the number of distinct
#: field-name lists, then each as its length and its names; then per fund the index (from 1) of
#: its list and its values; then the state value. (Names go once per chunk, not once per fund:
#: packing arguments is the larger part of the client's work.) Per fund it runs HSET and XADD
#: with the names and values interleaved: the arguments ``field_args`` gives pipeline mode.
#: Returns {funds written, index in KEYS of the key that stopped it or 0, its error or "",
#: then index, error of each write skipped, then index, iopv, code of each refused history
#: entry (``refusal``)}. A WRONGTYPE key is skipped (HSET and XADD are
#: separate writes); any other error stops the chunk at that fund, which is then not counted.
WRITE_SCRIPT = _COMMON + """
local maxlen, id = ARGV[1], ARGV[3]
local out = {0, 0, '', {}, {}}
local function stops(k, reply)
  if string.sub(reply.err, 1, 10) == 'WRONGTYPE ' then
    local skipped = out[4]
    skipped[#skipped + 1] = k
    skipped[#skipped + 1] = reply.err
    return false
  end
  out[2] = k
  out[3] = reply.err
  return true
end
local lists, tsat, flagsat, a = field_lists(5, tonumber(ARGV[4]))
local args = {}
for f = 1, math.floor(#KEYS / 2) do
  local k = 2 * f - 1
  local s = tonumber(ARGV[a])
  local names = lists[s]
  local n = #names
  for j = 1, n do
    args[2 * j - 1] = names[j]
    args[2 * j] = ARGV[a + j]
  end
  local flagged = flagsat[s] > 0 and recovering(ARGV[a + flagsat[s]])
  local newer = true
  if tsat[s] > 0 then
    local cur = redis.pcall('HMGET', KEYS[k], 'ts', 'flags')
    if cur.err then
      if stops(k, cur) then return out end
      newer = false
    else
      newer = replaces(cur, ARGV[a + tsat[s]], flagged)
    end
  end
  if newer then
    local reply = redis.pcall('HSET', KEYS[k], unpack(args, 1, 2 * n))
    if type(reply) == 'table' and reply.err and stops(k, reply) then return out end
  end
  local reply = redis.pcall('XADD', KEYS[k + 1], 'MAXLEN', '~', maxlen, id, unpack(args, 1, 2 * n))
  if type(reply) == 'table' and reply.err then
    if string.find(reply.err, 'equal or smaller', 1, true) then
      local refused = out[5]
      local value, code = refusal(KEYS[k + 1], id, maxlen, args, n, flagged)
      refused[#refused + 1] = f
      refused[#refused + 1] = value
      refused[#refused + 1] = code
    elseif stops(k + 1, reply) then
      return out
    end
  end
  out[1] = f
  a = a + 1 + n
end
if ARGV[2] == '1' then
  local reply = redis.pcall('SET', KEYS[#KEYS], ARGV[a])
  if type(reply) == 'table' and reply.err then
    out[2] = #KEYS
    out[3] = reply.err
  end
end
return out
"""
WRITE_SCRIPT_SHA1 = hashlib.sha1(WRITE_SCRIPT.encode()).hexdigest()

#: Independent writes on one node. ARGV: history maxlen, the entry ID, the number of keys, the keys
#: (not declared as KEYS: Redis refuses declared keys of several slots even with the flag), the number
#: of field-name lists, then each as its length and names; then per key its kind (``h``: the
#: latest-value hash, ``x``: the history stream), its list's index and its values. Returns {keys
#: written, refused history entries as (key index, the entry's iopv or false when only a later
#: entry is there, ``refusal``'s code), skipped WRONGTYPE keys as (index, error), index of the key that stopped the
#: call or 0, its error}.
# The flag line must come first in the script.
NODE_SCRIPT = "#!lua flags=allow-cross-slot-keys\n" + _COMMON + """
local maxlen, id, nkeys = ARGV[1], ARGV[2], tonumber(ARGV[3])
local KEYS = {unpack(ARGV, 4, 3 + nkeys)}
local lists, tsat, flagsat, a = field_lists(5 + nkeys, tonumber(ARGV[4 + nkeys]))
local refused, skipped, args = {}, {}, {}
local function failed(k, reply)
  if string.sub(reply.err, 1, 10) == 'WRONGTYPE ' then
    skipped[#skipped + 1] = k
    skipped[#skipped + 1] = reply.err
    return false
  end
  return true
end
for k = 1, #KEYS do
  local kind, s = ARGV[a], tonumber(ARGV[a + 1])
  local names = lists[s]
  local n = #names
  for j = 1, n do
    args[2 * j - 1] = names[j]
    args[2 * j] = ARGV[a + 1 + j]
  end
  local reply = nil
  local flagged = flagsat[s] > 0 and recovering(ARGV[a + 1 + flagsat[s]])
  if kind == 'h' then
    local newer = true
    if tsat[s] > 0 then
      local cur = redis.pcall('HMGET', KEYS[k], 'ts', 'flags')
      local ts = ARGV[a + 1 + tsat[s]]
      if cur.err then
        reply = cur
      elseif not replaces(cur, ts, flagged) then
        newer = false
      end
    end
    if newer and not reply then reply = redis.pcall('HSET', KEYS[k], unpack(args, 1, 2 * n)) end
  else
    reply = redis.pcall('XADD', KEYS[k], 'MAXLEN', '~', maxlen, id, unpack(args, 1, 2 * n))
    if type(reply) == 'table' and reply.err and string.find(reply.err, 'equal or smaller', 1, true) then
      local value, code = refusal(KEYS[k], id, maxlen, args, n, flagged)
      refused[#refused + 1] = k
      refused[#refused + 1] = value
      refused[#refused + 1] = code
      reply = nil
    end
  end
  if type(reply) == 'table' and reply.err and failed(k, reply) then
    return {k - 1, refused, skipped, k, reply.err}
  end
  a = a + 2 + n
end
return {#KEYS, refused, skipped, 0, ''}
"""
NODE_SHA1 = hashlib.sha1(NODE_SCRIPT.encode()).hexdigest()
