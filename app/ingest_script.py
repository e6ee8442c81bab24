"""The ingest script: one Lua call stores a batch of verified events atomically.

For each event it checks the dedup marker, appends the event to `pf:events`, writes its
Dramatiq message (dramatiq 2.2.1's RedisBroker layout: the `.msgs` hash and the queue
list), folds a state delivery into a queued one of the same work item, keeps the work
item's newest human snapshot (`pf:snapshot:<issue>`, by `data.updated_at`, ties to the
later arrival: the worker uses it instead of reading Plane), and records the project's
last-webhook time. It takes each event's meta (`app.ingest_event`); `answer_of` reads the
script's reply for one event.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import orjson

from app.ingest_event import AT, META_HEAD, PROCESS, STREAM_FIELDS, Event, valid_unicode
from app.queue import MESSAGE_AFTER_ARGS, MESSAGE_BEFORE_ID, MESSAGE_BEFORE_TIMESTAMP

_STORED, _DUPLICATE, _FOLDED = "1", "0", "2"  # each event's code in the script's reply
_M = {name: n + 1 for n, name in enumerate(META_HEAD)}  # Lua's 1-based positions
_AT = {name: n + 1 for name, n in AT.items()}


def _xadd_fields() -> str:
    """The XADD's field/value arguments written out (Lua on Redis is slow: no loop, no
    table per event); the outcome says `folded: <id>` when the event folded."""
    pairs = []
    for name in STREAM_FIELDS:
        value = f"m[{_AT[name]}]"
        if name == "outcome":
            value = f"into and ('folded: ' .. into) or {value}"
        pairs.append(f"'{name}', {value}")
    pairs.append(f"'body', ARGV[{ARGS_BEFORE_BODIES} + i]")
    return ",\n      ".join(pairs)


ARGS_BEFORE_BODIES = 7  # maxlen, ttl, fold_ttl, own user, n, the metas, the batch's ms
# The metas travel in one JSON array (one argument, decoded by the script's cjson): per
# argument, the receiver's packing costs more than Redis's decoding, and the receiver is
# the busier process. The per-event keys are named in the meta, not in KEYS: planeflow
# runs on one Redis (not a cluster), as Dramatiq's own scripts do.


def _lua(text: str) -> str:
    """A Lua string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


# Redis runs this on the same cores as the receiver, so it does little per event: one
# MGET for the markers, the XADD with its fields written out, a SET per marker; the
# queue writes (HSET + RPUSH per queue), the last-webhook times and the "is this actor
# one of ours" answers are gathered and written or asked once per batch.
RECORD_BATCH = f"""
local maxlen, ttl, fold_ttl, own_cfg = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local n = tonumber(ARGV[5])
local metas = cjson.decode(ARGV[6])
local stamp = ARGV[7]  -- the messages' timestamp (ms): one per batch
local after_args, before_id = {_lua(MESSAGE_AFTER_ARGS)}, {_lua(MESSAGE_BEFORE_ID)}
local before_stamp = {_lua(MESSAGE_BEFORE_TIMESTAMP)}
local me = redis.call('GET', KEYS[3])  -- our default Plane user; KEYS[4]: all of ours
local ours = {{}}  -- actor -> whether it is one of our Plane users
local queued, order = {{}}, {{}}  -- queue list key -> {{msgs key, ids, id/message pairs}}
local last = {{}}  -- project -> last-webhook time
local out = {{}}
for i = 1, n do
  local m = metas[i]  -- strings only (`event_meta`)
  local marker, fold_key, snap_key = m[{_M["marker"]}], m[{_M["fold_key"]}], m[{_M["snap_key"]}]
  local head, project = m[{_M["head"]}], m[{_M["last_project"]}]
  local fold = fold_key ~= '-'
  local existing, queued_id, snap
  if fold then
    local got = redis.call('MGET', marker, fold_key, snap_key)
    existing, queued_id, snap = got[1], got[2], got[3]
  else
    existing = redis.call('GET', marker)
  end
  if existing then
    out[i] = '0|' .. existing .. '|'
  else
    local actor = m[{_AT["actor"]}]
    local own = ours[actor]
    if own == nil then
      own = actor ~= '' and (actor == own_cfg or actor == me
                             or redis.call('SISMEMBER', KEYS[4], actor) == 1)
      ours[actor] = own
    end
    local into = false
    if queued_id then
      local qid, qown = string.match(queued_id, '^(.*)|([01])$')
      if qid and not (qown == '1' and not own) then into = qid end
    end
    local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*',
      {_xadd_fields()})
    redis.call('SET', marker, id, 'EX', ttl)
    local updated = tonumber(m[{_AT["updated"]}])
    if fold and not own and updated then
      local at = snap and tonumber(string.match(snap, '^([^|]*)'))
      if not at or updated >= at then
        redis.call('SET', snap_key, m[{_AT["updated"]}] .. '|' .. id, 'EX', ttl)
      end
    end
    if into then
      out[i] = '2|' .. id .. '|' .. into
    else
      if head ~= '' then
        local qlist = m[{_M["qlist"]}]
        local q = queued[qlist]
        if not q then
          q = {{m[{_M["qmsgs"]}], {{}}, {{}}}}
          queued[qlist] = q
          order[#order + 1] = qlist
        end
        local ids, msgs = q[2], q[3]
        ids[#ids + 1] = id
        msgs[#msgs + 1] = id
        msgs[#msgs + 1] = head .. id .. m[{_M["args"]}] .. after_args .. id .. before_id .. id
                            .. before_stamp .. stamp .. '}}'
        if fold then
          redis.call('SET', fold_key, id .. '|' .. (own and '1' or '0'), 'EX', fold_ttl)
        end
      end
      out[i] = '1|' .. id .. '|'
    end
    if project ~= '' then last[project] = m[{_AT["received_at"]}] end
  end
end
-- Dramatiq's layout: the message in the queue's hash, then its id on the queue's list
-- (one script: no consumer sees one without the other).
for _, qlist in ipairs(order) do
  local q = queued[qlist]
  redis.call('HSET', q[1], unpack(q[3]))
  redis.call('RPUSH', qlist, unpack(q[2]))
end
local times = {{}}
for project, at in pairs(last) do
  times[#times + 1] = project
  times[#times + 1] = at
end
if #times > 0 then redis.call('HSET', KEYS[2], unpack(times)) end
return table.concat(out, ';')
"""


class Answer(NamedTuple):  # one per request: a tuple costs a third of a frozen dataclass
    status: int
    body: bytes  # the JSON the request is answered with
    outcome: str  # what it counts as (the metrics label)

    def json(self) -> dict[str, Any]:
        value: dict[str, Any] = orjson.loads(self.body)
        return value


SPOOLED = Answer(202, b'{"accepted":true,"spooled":true}', "spooled")
_PROCESSED = b'","outcome":"process"}'


def answer_of(event: Event, reply: str) -> Answer:
    """The answer to one event's request, from its part of the script's reply (the
    common ones joined from pieces: the ids are Redis stream ids, digits and a dash)."""
    code, event_id, into = reply.split("|")
    if code == _DUPLICATE:
        return Answer(200, b'{"duplicate":true,"event_id":"%s"}' % event_id.encode(), "duplicate")
    if code == _FOLDED:
        body = {"accepted": True, "event_id": event_id, "outcome": "folded", "folded_into": into}
        return Answer(202, orjson.dumps(body), "folded")
    outcome = event.outcome
    tail = (
        _PROCESSED
        if outcome == PROCESS
        else b'","outcome":' + orjson.dumps(valid_unicode(outcome)) + b"}"
    )
    return Answer(202, b'{"accepted":true,"event_id":"' + event_id.encode() + tail, outcome)


def stored_answer(event_id: str) -> Answer:
    """The answer to a stored event whose own answer could not be made (a bug): still
    202, as it is stored and queued."""
    return Answer(202, b'{"accepted":true,"event_id":"%s"}' % event_id.encode(), "stored")
