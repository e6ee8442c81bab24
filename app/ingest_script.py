"""The ingest script: one Lua call stores a batch of verified events atomically.

For each event it checks the dedup marker, appends the event to `pf:events`, writes its
Dramatiq message (dramatiq 2.2.1's RedisBroker layout: the `.msgs` hash and the queue
list), folds a state delivery into a queued one of the same work item, keeps the work
item's newest human snapshot (`pf:snapshot:<issue>`, by `data.updated_at`, ties to the
later arrival: the worker uses it instead of reading Plane), and records the project's
last-webhook time. `add_event` builds one event's keys and arguments;
`answer_of` reads the script's reply for it.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from app.keys import Keys
from app.queue import message_parts, queue_keys
from app.spool import Entry

PROCESS = "process"
STREAM_FIELDS = (  # `pf:events` fields, in this order; the body goes last: the long one
    "source",
    "event",
    "action",
    "field",
    "project",
    "issue",
    "actor",
    "delivery",
    "sha256",
    "received_at",
    "outcome",
    "spooled",
    "updated",  # data.updated_at as epoch seconds ('' when absent): the snapshot's age
)
# Per event: the marker, the fold marker, the queue list, the queue's message hash and
# the work item's snapshot marker.
_KEYS_PER_EVENT = 5
_STORED, _DUPLICATE, _FOLDED = 1, 0, 2

# Per event, after the stream fields' values: fold ('1'/'0'), the project whose
# last-webhook time to record ('' for none), the message in four pieces around its id
# (all '' for an event that is not queued: `queue.message_parts`), the body.
_ARGS_PER_EVENT = len(STREAM_FIELDS) + 7
_NAMES = ", ".join(f"'{name}'" for name in STREAM_FIELDS)
_AT = {name: n + 1 for n, name in enumerate(STREAM_FIELDS)}  # Lua's 1-based positions
_NF = len(STREAM_FIELDS)

# Redis runs this on the same cores as the receiver, so it does little per event: one
# MGET for the markers, the XADD from one reused table, a SET per marker written; the
# queue writes (HSET + RPUSH per queue), the last-webhook times and the "is this actor
# one of ours" answers are gathered and written or asked once per batch.
RECORD_BATCH = f"""
local maxlen, ttl, fold_ttl, own_cfg = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local n = tonumber(ARGV[5])
local names = {{{_NAMES}}}
local fields = {{}}
for j = 1, {_NF} do fields[2 * j - 1] = names[j] end
fields[{2 * _NF + 1}] = 'body'
local me = redis.call('GET', KEYS[3])  -- our default Plane user; KEYS[4]: all of ours
local ours = {{}}  -- actor -> whether it is one of our Plane users
local queued, order = {{}}, {{}}  -- queue list key -> {{msgs key, ids, id/message pairs}}
local last = {{}}  -- project -> last-webhook time
local out = {{}}
for i = 1, n do
  local k = 4 + (i - 1) * {_KEYS_PER_EVENT}
  local marker, fold_key, qlist, qmsgs = KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4]
  local snap_key = KEYS[k + 5]
  local a = 5 + (i - 1) * {_ARGS_PER_EVENT}
  local fold, project = ARGV[a + {_NF + 1}], ARGV[a + {_NF + 2}]
  local existing, queued_id, snap
  if fold == '1' then
    local got = redis.call('MGET', marker, fold_key, snap_key)
    existing, queued_id, snap = got[1], got[2], got[3]
  else
    existing = redis.call('GET', marker)
  end
  if existing then
    out[i] = '0|' .. existing .. '|'
  else
    local actor = ARGV[a + {_AT["actor"]}]
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
    for j = 1, {_NF} do fields[2 * j] = ARGV[a + j] end
    if into then fields[{2 * _AT["outcome"]}] = 'folded: ' .. into end
    fields[{2 * _NF + 2}] = ARGV[a + {_NF + 7}]
    local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', unpack(fields))
    redis.call('SET', marker, id, 'EX', ttl)
    local updated = tonumber(ARGV[a + {_AT["updated"]}])
    if fold == '1' and not own and updated then
      local at = snap and tonumber(string.match(snap, '^([^|]*)'))
      if not at or updated >= at then
        redis.call('SET', snap_key, ARGV[a + {_AT["updated"]}] .. '|' .. id, 'EX', ttl)
      end
    end
    if into then
      out[i] = '2|' .. id .. '|' .. into
    else
      local head = ARGV[a + {_NF + 3}]
      if head ~= '' then
        local q = queued[qlist]
        if not q then
          q = {{qmsgs, {{}}, {{}}}}
          queued[qlist] = q
          order[#order + 1] = qlist
        end
        local ids, msgs = q[2], q[3]
        ids[#ids + 1] = id
        msgs[#msgs + 1] = id
        msgs[#msgs + 1] = head .. id .. ARGV[a + {_NF + 4}] .. id .. ARGV[a + {_NF + 5}]
                            .. id .. ARGV[a + {_NF + 6}]
        if fold == '1' then
          redis.call('SET', fold_key, id .. '|' .. (own and '1' or '0'), 'EX', fold_ttl)
        end
      end
      out[i] = '1|' .. id .. '|'
    end
    if project ~= '' then last[project] = ARGV[a + {_AT["received_at"]}] end
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
    body: dict[str, Any]


def add_event(keys_of: Keys, entry: Entry, keys: list[str], args: list[Any]) -> None:
    """Append one event's script keys (marker, fold, queue list and hash, snapshot) and
    arguments (the stream fields' values, fold, last-webhook project, the message's
    four pieces, body)."""
    get = entry.get
    queued = entry["outcome"] == PROCESS
    fold = queued and bool(get("fold"))
    if queued:
        parts = message_parts(entry["queue"], entry["actor_name"], get("payload", {}))
        list_key, msgs_key = queue_keys(entry["queue"])
    else:
        parts, list_key, msgs_key = _NOT_QUEUED, "-", "-"
    issue = str(get("issue"))
    fold_key, snap_key = (keys_of.fold(issue), keys_of.snapshot(issue)) if fold else ("-", "-")
    keys += [keys_of.delivery(entry["sha256"]), fold_key, list_key, msgs_key, snap_key]
    last_webhook = entry["source"] == "plane" and entry["outcome"] != "unknown_project"
    args += [str(get(name) or "") for name in STREAM_FIELDS]
    args += [
        "1" if fold else "0",
        str(entry["project"]) if last_webhook else "",
        *parts,
        str(get("body") or ""),
    ]


_NOT_QUEUED = ("", "", "", "")


def answer_of(entry: Entry, reply: str) -> Answer:
    code_text, event_id, into = reply.split("|")
    code = int(code_text)
    if code == _DUPLICATE:
        return Answer(200, {"duplicate": True, "event_id": event_id})
    body: dict[str, Any] = {"accepted": True, "event_id": event_id, "outcome": entry["outcome"]}
    if code == _FOLDED:
        body.update(outcome="folded", folded_into=into)
    return Answer(202, body)


def outcome_of(entry: Entry, answer: Answer) -> str:
    if answer.status == 200:
        return "duplicate"
    return str(answer.body.get("outcome", entry["outcome"]))
