//! The Lua scripts of the Redis engine. Each runs atomically in Redis; the
//! client sends its SHA and loads it on a miss (after a Redis restart).
//!
//! Keys of a channel `ch` (prefix `volley`): `volley.s.ch` (hash: `e`
//! epoch, `o` top offset), `volley.h.ch` (list of `offset time_ms json`,
//! oldest first), `volley.pz.ch` (sorted set: client -> expiry time) and
//! `volley.ph.ch` (hash: client -> info).

use redis::Script;

/// Publish with history, one or more publications (of any channels of the
/// shard) in one call: the script's own cost is paid once per batch. Per
/// publication i (from 0), KEYS[2i+1], KEYS[2i+2]: stream, history; ARGV[6i+1]
/// to ARGV[6i+6]: a new epoch (used when the stream is new), TTL in seconds,
/// history size, time in ms, the publication's JSON, the pub/sub channel.
/// Returns `{{epoch, offset}, ...}` in the same order.
const PUBLISH: &str = r"
local results = {}
for i = 0, #KEYS / 2 - 1 do
  local stream, list, a = KEYS[2 * i + 1], KEYS[2 * i + 2], 6 * i
  local epoch = redis.call('hget', stream, 'e')
  if not epoch then
    epoch = ARGV[a + 1]
    redis.call('hset', stream, 'e', epoch, 'o', 0)
    redis.call('del', list)
  end
  local offset = redis.call('hincrby', stream, 'o', 1)
  local entry = offset .. ' ' .. ARGV[a + 4] .. ' ' .. ARGV[a + 5]
  redis.call('rpush', list, entry)
  redis.call('ltrim', list, -tonumber(ARGV[a + 3]), -1)
  redis.call('expire', stream, ARGV[a + 2])
  redis.call('expire', list, ARGV[a + 2])
  redis.call('publish', ARGV[a + 6], 'p ' .. epoch .. ' ' .. entry)
  results[i + 1] = {epoch, offset}
end
return results
";

/// Read a stream. KEYS: stream, history. ARGV: a new epoch, TTL in seconds,
/// 1 to return the entries, 1 to create the stream (with the new epoch)
/// when there is none and keep it a TTL longer. Without creating, a missing
/// stream reads as the new epoch at offset 0. Returns `{epoch, top,
/// entries}`.
const READ: &str = r"
local epoch = redis.call('hget', KEYS[1], 'e')
if not epoch then
  if ARGV[4] ~= '1' then
    return {ARGV[1], 0, {}}
  end
  epoch = ARGV[1]
  redis.call('hset', KEYS[1], 'e', epoch, 'o', 0)
  redis.call('del', KEYS[2])
end
if ARGV[4] == '1' then
  redis.call('expire', KEYS[1], ARGV[2])
end
local top = redis.call('hget', KEYS[1], 'o')
local entries = {}
if ARGV[3] == '1' then
  entries = redis.call('lrange', KEYS[2], 0, -1)
end
return {epoch, tonumber(top), entries}
";

/// End a stream if it is still in an epoch. KEYS: stream, history. ARGV:
/// the epoch. Returns 1 when ended.
const RESET: &str = r"
if redis.call('hget', KEYS[1], 'e') == ARGV[1] then
  redis.call('del', KEYS[1], KEYS[2])
  return 1
end
return 0
";

/// Add or refresh a presence entry. KEYS: expiries, infos. ARGV: client,
/// info JSON, expiry time in ms, TTL in ms.
const PRESENCE_ADD: &str = r"
redis.call('zadd', KEYS[1], ARGV[3], ARGV[1])
redis.call('hset', KEYS[2], ARGV[1], ARGV[2])
redis.call('pexpire', KEYS[1], ARGV[4])
redis.call('pexpire', KEYS[2], ARGV[4])
";

/// Remove a presence entry. KEYS: expiries, infos. ARGV: client.
const PRESENCE_REMOVE: &str = r"
redis.call('zrem', KEYS[1], ARGV[1])
redis.call('hdel', KEYS[2], ARGV[1])
";

/// The live presence entries, dropping expired ones. KEYS: expiries,
/// infos. ARGV: now in ms.
const PRESENCE_GET: &str = r"
local expired = redis.call('zrangebyscore', KEYS[1], '-inf', ARGV[1])
if #expired > 0 then
  redis.call('zremrangebyscore', KEYS[1], '-inf', ARGV[1])
  redis.call('hdel', KEYS[2], unpack(expired))
end
return redis.call('hvals', KEYS[2])
";

/// The engine's scripts.
pub(super) struct Scripts {
    pub(super) publish: Script,
    pub(super) read: Script,
    pub(super) reset: Script,
    pub(super) presence_add: Script,
    pub(super) presence_remove: Script,
    pub(super) presence_get: Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        Self {
            publish: Script::new(PUBLISH),
            read: Script::new(READ),
            reset: Script::new(RESET),
            presence_add: Script::new(PRESENCE_ADD),
            presence_remove: Script::new(PRESENCE_REMOVE),
            presence_get: Script::new(PRESENCE_GET),
        }
    }
}
