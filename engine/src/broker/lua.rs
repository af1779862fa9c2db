//! The Lua scripts of the Redis broker and presence. Each runs atomically on the primary that
//! owns the room's slot: every key a script touches carries the room's hash tag.
//!
//! **The epoch.** A room's meta hash holds its epoch, latest offset and the replication id of
//! the primary that wrote it (`r`). Offsets must never be handed out twice in one epoch:
//! - the meta is missing (flushed, expired, or a primary restarted without persistence): the
//!   history is gone, a new epoch starts;
//! - `r` is the current primary's *previous* replication id (`master_replid2`): a replica was
//!   promoted, and it may lack the last writes of the primary it replaced. The scripts then do
//!   nothing and answer [`FAILOVER`]; the node refills the missing tail from the chat archive
//!   with the repair script and runs its script again. The epoch stays.
//!
//! When `r` is neither id the keys arrived by slot migration (`MIGRATE` copies them intact), so
//! the history is whole and the script adopts it.

/// The first element of a publish or history reply when the room's primary was promoted and
/// its history has not been repaired yet: `{FAILOVER, epoch, offset}` (an epoch is alphanumeric,
/// so it can never be this).
pub(crate) const FAILOVER: &str = "!failover";

/// Shared prelude: the room's position, starting a new epoch when the history may be lost.
/// KEYS[1] = meta, KEYS[2] = stream; ARGV[1] = a fresh epoch to use if one is needed.
const POSITION: &str = r#"
local info = redis.call('INFO', 'replication')
local rid = string.match(info, 'master_replid:(%w+)') or ''
local rid2 = string.match(info, 'master_replid2:(%w+)') or ''
local m = redis.call('HMGET', KEYS[1], 'e', 'o', 'r')
local epoch = m[1]
local off = tonumber(m[2]) or 0
if epoch and m[3] == rid2 and m[3] ~= rid then
  return {'!failover', epoch, off}
end
if not epoch then
  epoch = ARGV[1]
  off = 0
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'e', epoch, 'o', 0, 'r', rid)
elseif m[3] ~= rid then
  redis.call('HSET', KEYS[1], 'r', rid)
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"#;

/// Publish a chat message. ARGV: 1 fresh epoch, 2 idempotency key suffix (empty for none),
/// 3 envelope body, 4 window size, 5 window age ms, 6 idempotency ttl ms, 7 meta ttl ms,
/// 8 channel, 9 message id, 10 accept time (unix ms). Returns `{epoch, offset, duplicate}`, and
/// for a duplicate the original's id and time when its key holds them.
const PUBLISH_BODY: &str = r#"
local idem = nil
if ARGV[2] ~= '' then
  idem = KEYS[1] .. ':i:' .. ARGV[2]
  local seen = redis.call('GET', idem)
  if seen then
    local e, o, id, ts = string.match(seen, '^(%S+) (%d+) ?(%S*) ?(%d*)$')
    if e == epoch then return {epoch, tonumber(o), 1, id, ts} end
  end
end
off = off + 1
redis.call('HSET', KEYS[1], 'o', off)
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[4], '*', 'o', off, 'b', ARGV[3])
redis.call('XTRIM', KEYS[2], 'MINID', now - tonumber(ARGV[5]))
redis.call('PEXPIRE', KEYS[1], ARGV[7])
redis.call('PEXPIRE', KEYS[2], ARGV[7])
if idem then
  redis.call('SET', idem, epoch .. ' ' .. off .. ' ' .. ARGV[9] .. ' ' .. ARGV[10], 'PX', ARGV[6])
end
redis.call('SPUBLISH', ARGV[8], 'C' .. epoch .. '\n' .. off .. '\n' .. ARGV[3])
return {epoch, off, 0}
"#;

/// Read history. ARGV: 1 fresh epoch, 2 `L` (latest) or `S` (since), 3 count (L) or offset (S),
/// 4 epoch (S), 5 window age ms, 6 window size. Returns
/// `{epoch, offset, complete, off1, body1, off2, body2, …}`, oldest first.
const HISTORY_BODY: &str = r#"
redis.call('XTRIM', KEYS[2], 'MINID', now - tonumber(ARGV[5]))
local want = 0
local complete = 1
if ARGV[2] == 'L' then
  want = tonumber(ARGV[3])
else
  local since = tonumber(ARGV[3])
  if ARGV[4] ~= epoch or since > off or off - since > tonumber(ARGV[6]) then
    return {epoch, off, 0}
  end
  want = off - since
end
local out = {epoch, off, complete}
if want == 0 then return out end
local entries = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', want)
if ARGV[2] == 'S' then
  local oldest = entries[#entries]
  if #entries < want or tonumber(oldest[2][2]) ~= off - want + 1 then
    return {epoch, off, 0}
  end
end
for i = #entries, 1, -1 do
  local f = entries[i][2]
  table.insert(out, f[2])
  table.insert(out, f[4])
end
return out
"#;

/// Refill a promoted replica's history from the archive. ARGV: 1 the epoch and 2 the offset
/// the node saw in the [`FAILOVER`] reply, 3 meta ttl ms, 4 window size, 5 the highest offset
/// the node knows was handed out, 6 a fresh epoch when the node has no archive to refill from
/// (the room starts over in it, as before a repair existed; empty otherwise), then offset/body
/// pairs in offset order. Appends the pairs
/// past the room's offset, moves the offset to the highest of them and ARGV[5] (an offset
/// handed out but archived nowhere stays a hole, which history reads report as incomplete,
/// never a reused offset), and adopts the current primary. Returns 1 when the room is
/// repaired (by this call or an earlier one), 0 when its meta changed meanwhile (read again).
const REPAIR: &str = r#"
local info = redis.call('INFO', 'replication')
local rid = string.match(info, 'master_replid:(%w+)') or ''
local rid2 = string.match(info, 'master_replid2:(%w+)') or ''
local m = redis.call('HMGET', KEYS[1], 'e', 'o', 'r')
if not m[1] then return 0 end
if m[3] ~= rid2 or m[3] == rid then return 1 end
if m[1] ~= ARGV[1] or tonumber(m[2]) ~= tonumber(ARGV[2]) then return 0 end
if ARGV[6] ~= '' then
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'e', ARGV[6], 'o', 0, 'r', rid)
  return 1
end
local off = tonumber(m[2])
for i = 7, #ARGV, 2 do
  local o = tonumber(ARGV[i])
  if o > off then
    redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[4], '*', 'o', o, 'b', ARGV[i + 1])
    off = o
  end
end
if tonumber(ARGV[5]) > off then off = tonumber(ARGV[5]) end
redis.call('HSET', KEYS[1], 'o', off, 'r', rid)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return 1
"#;

/// The repair script.
pub(crate) fn repair() -> &'static str {
    REPAIR
}

/// The publish script.
pub(crate) fn publish() -> String {
    format!("{POSITION}{PUBLISH_BODY}")
}

/// The history script.
pub(crate) fn history() -> String {
    format!("{POSITION}{HISTORY_BODY}")
}

/// Presence. KEYS[1] = users hash (user → connections on every node), KEYS[2] = nodes zset
/// (node → heartbeat deadline); each node's own users hash is `KEYS[2]:<node>`, same slot.
/// Sweeping removes nodes whose deadline passed and returns the users that left with them.
const PRESENCE_PRELUDE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function sweep()
  local gone = {}
  local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 64)
  for _, n in ipairs(dead) do
    local h = KEYS[2] .. ':' .. n
    local kv = redis.call('HGETALL', h)
    for i = 1, #kv, 2 do
      local left = redis.call('HINCRBY', KEYS[1], kv[i], -tonumber(kv[i + 1]))
      if left <= 0 then
        redis.call('HDEL', KEYS[1], kv[i])
        table.insert(gone, kv[i])
      end
    end
    redis.call('DEL', h, h .. ':v')
    redis.call('ZREM', KEYS[2], n)
  end
  return gone
end
local function keep(node, ttl)
  redis.call('ZADD', KEYS[2], now + ttl, node)
  redis.call('PEXPIRE', KEYS[1], ttl * 2)
  redis.call('PEXPIRE', KEYS[2], ttl * 2)
  redis.call('PEXPIRE', KEYS[2] .. ':' .. node, ttl * 2)
  redis.call('PEXPIRE', KEYS[2] .. ':' .. node .. ':v', ttl * 2)
end
"#;

/// ARGV: 1 node, 2 user, 3 connections to add, 4 ttl ms. Returns 1 if the user was not present
/// before. Counts the node's write in its version key (`…:pn:<node>:v`), as remove does.
const PRESENCE_ADD_BODY: &str = r#"
local n = tonumber(ARGV[3])
redis.call('INCR', KEYS[2] .. ':' .. ARGV[1] .. ':v')
redis.call('HINCRBY', KEYS[2] .. ':' .. ARGV[1], ARGV[2], n)
keep(ARGV[1], tonumber(ARGV[4]))
local total = redis.call('HINCRBY', KEYS[1], ARGV[2], n)
if total == n then return 1 end
return 0
"#;

/// ARGV: 1 node, 2 user. Returns 1 if that was the user's last connection on every node.
const PRESENCE_REMOVE_BODY: &str = r#"
local h = KEYS[2] .. ':' .. ARGV[1]
redis.call('INCR', h .. ':v')
local mine = tonumber(redis.call('HGET', h, ARGV[2]) or '0')
if mine <= 0 then return 0 end
if mine == 1 then redis.call('HDEL', h, ARGV[2]) else redis.call('HINCRBY', h, ARGV[2], -1) end
local total = redis.call('HINCRBY', KEYS[1], ARGV[2], -1)
if total <= 0 then
  redis.call('HDEL', KEYS[1], ARGV[2])
  return 1
end
return 0
"#;

/// ARGV: 1 node, 2 ttl ms, 3 the node's version of the room (its adds and removes so far).
/// Refreshes the node's deadline and sweeps dead nodes. Returns `{known, gone users…}`: `known`
/// is 0 when Redis does not hold all of this node's writes (it was swept after a pause, or a
/// promoted replica lacks the last ones, or a write failed) and the node must re-assert.
const PRESENCE_HEARTBEAT_BODY: &str = r#"
local v = redis.call('GET', KEYS[2] .. ':' .. ARGV[1] .. ':v')
local known = 0
if redis.call('ZSCORE', KEYS[2], ARGV[1]) and v == ARGV[3] then known = 1 end
local gone = sweep()
keep(ARGV[1], tonumber(ARGV[2]))
table.insert(gone, 1, known)
return gone
"#;

/// ARGV: 1 node, 2 ttl ms, 3 the node's version, then user/connections pairs: everything this
/// node has in the room. Makes Redis hold exactly that for the node (adding, correcting and
/// removing its users) and records the version. Returns `{#joins, joined users…, left users…}`:
/// users now present who were not, and users gone who were.
const PRESENCE_REASSERT_BODY: &str = r#"
local h = KEYS[2] .. ':' .. ARGV[1]
local old = {}
local kv = redis.call('HGETALL', h)
for i = 1, #kv, 2 do old[kv[i]] = tonumber(kv[i + 1]) end
local joins, leaves = {}, {}
local function apply(user, delta)
  local total = redis.call('HINCRBY', KEYS[1], user, delta)
  if total <= 0 then
    redis.call('HDEL', KEYS[1], user)
    if total - delta > 0 then table.insert(leaves, user) end
  elseif total - delta <= 0 then
    table.insert(joins, user)
  end
end
for i = 4, #ARGV, 2 do
  local user, n = ARGV[i], tonumber(ARGV[i + 1])
  local delta = n - (old[user] or 0)
  old[user] = nil
  redis.call('HSET', h, user, n)
  if delta ~= 0 then apply(user, delta) end
end
for user, n in pairs(old) do
  redis.call('HDEL', h, user)
  apply(user, -n)
end
redis.call('SET', h .. ':v', ARGV[3])
keep(ARGV[1], tonumber(ARGV[2]))
local out = {#joins}
for _, u in ipairs(joins) do table.insert(out, u) end
for _, u in ipairs(leaves) do table.insert(out, u) end
return out
"#;

/// The presence re-assert script.
pub(crate) fn presence_reassert() -> String {
    format!("{PRESENCE_PRELUDE}{PRESENCE_REASSERT_BODY}")
}

/// The presence add script.
pub(crate) fn presence_add() -> String {
    format!("{PRESENCE_PRELUDE}{PRESENCE_ADD_BODY}")
}

/// The presence remove script.
pub(crate) fn presence_remove() -> String {
    format!("{PRESENCE_PRELUDE}{PRESENCE_REMOVE_BODY}")
}

/// The presence heartbeat script.
pub(crate) fn presence_heartbeat() -> String {
    format!("{PRESENCE_PRELUDE}{PRESENCE_HEARTBEAT_BODY}")
}

/// ARGV: 1 limit. Returns `{count, user…}` with at most `limit` users. Read-only.
pub(crate) const PRESENCE_SNAPSHOT: &str = r#"
local count = redis.call('HLEN', KEYS[1])
local out = {count}
local limit = tonumber(ARGV[1])
if limit == 0 or count == 0 then return out end
local cursor = '0'
repeat
  local r = redis.call('HSCAN', KEYS[1], cursor, 'COUNT', limit)
  cursor = r[1]
  for i = 1, #r[2], 2 do
    if #out > limit then return out end
    table.insert(out, r[2][i])
  end
until cursor == '0'
return out
"#;
