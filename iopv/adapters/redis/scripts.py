"""The Lua scripts the Redis sinks run server-side: ``WRITE_SCRIPT`` (one node: a chunk of funds,
each fund's hash and history entry together) and ``NODE_SCRIPT`` (Redis Cluster: independent
writes of one node's keys). Both are built from the same helpers (``_COMMON``): how the
arguments carry field names, when the latest-value hash may be replaced, and what a refused
history entry held. Their SHA1s are what ``EVALSHA`` calls.
"""

from __future__ import annotations

import hashlib

#: Lua shared by both scripts: the field-name lists of the arguments (each as its length and its
#: names; ``tsat[s]``: the position of ``ts`` in list ``s``, or 0), the "hash older than this
#: boundary" test on ``ts`` texts (non-negative integers: a shorter text is smaller), and the
#: ``iopv`` of a refused boundary's history entry (false when only a later entry is there).
_COMMON = """
local function field_lists(a, count)
  local lists, tsat = {}, {}
  for s = 1, count do
    local n = tonumber(ARGV[a])
    lists[s] = {unpack(ARGV, a + 1, a + n)}
    tsat[s] = 0
    for j = 1, n do
      if lists[s][j] == 'ts' then tsat[s] = j end
    end
    a = a + 1 + n
  end
  return lists, tsat, a
end
local function older(cur, ts)
  return (not cur) or #cur < #ts or (#cur == #ts and cur < ts)
end
local function peer_iopv(key, id)
  local peer = redis.call('XRANGE', key, id, id)
  if #peer == 0 then return false end
  local fv, value = peer[1][2], ''
  for j = 1, #fv, 2 do
    if fv[j] == 'iopv' then value = fv[j + 1] end
  end
  return value
end
"""

#: One chunk of a publication, server-side. KEYS: per fund its hash and its history stream, then
#: the state key when ARGV[2] is "1". ARGV: the history maxlen; that flag; the number of distinct
#: field-name lists, then each as its length and its names; then per fund the index (from 1) of
#: its list and its values; then the state value. (Names go once per chunk, not once per fund:
#: packing arguments is the larger part of the client's work.) Per fund it runs HSET and XADD
#: with the names and values interleaved: the arguments ``field_args`` gives pipeline mode.
#: Returns {funds written, index in KEYS of the key that stopped it or 0, its error or "",
#: then index, error of each write skipped}. A WRONGTYPE key is skipped (HSET and XADD are
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
local lists, tsat, a = field_lists(5, tonumber(ARGV[4]))
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
  local newer = true
  if tsat[s] > 0 then
    local cur = redis.pcall('HGET', KEYS[k], 'ts')
    if type(cur) == 'table' and cur.err then
      if stops(k, cur) then return out end
      newer = false
    else
      newer = older(cur, ARGV[a + tsat[s]])
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
      refused[#refused + 1] = f
      refused[#refused + 1] = peer_iopv(KEYS[k + 1], id)
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
#: entry is there), skipped WRONGTYPE keys as (index, error), index of the key that stopped the
#: call or 0, its error}.
# The flag line must come first in the script.
NODE_SCRIPT = "#!lua flags=allow-cross-slot-keys\n" + _COMMON + """
local maxlen, id, nkeys = ARGV[1], ARGV[2], tonumber(ARGV[3])
local KEYS = {unpack(ARGV, 4, 3 + nkeys)}
local lists, tsat, a = field_lists(5 + nkeys, tonumber(ARGV[4 + nkeys]))
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
  if kind == 'h' then
    local newer = true
    if tsat[s] > 0 then
      local cur = redis.pcall('HGET', KEYS[k], 'ts')
      local ts = ARGV[a + 1 + tsat[s]]
      if type(cur) == 'table' and cur.err then
        reply = cur
      elseif not older(cur, ts) then
        newer = false
      end
    end
    if newer and not reply then reply = redis.pcall('HSET', KEYS[k], unpack(args, 1, 2 * n)) end
  else
    reply = redis.pcall('XADD', KEYS[k], 'MAXLEN', '~', maxlen, id, unpack(args, 1, 2 * n))
    if type(reply) == 'table' and reply.err and string.find(reply.err, 'equal or smaller', 1, true) then
      refused[#refused + 1] = k
      refused[#refused + 1] = peer_iopv(KEYS[k], id)
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
