"""The ingest script: one Lua call stores a batch of verified events atomically.

For each event it checks the dedup marker, appends the event to `pf:events`, writes its
Dramatiq message (dramatiq 2.2.1's RedisBroker layout: the `.msgs` hash and the queue
list), folds a state delivery into a queued one of the same work item, and records the
project's last-webhook time. `add_event` builds one event's keys and arguments;
`answer_of` reads the script's reply for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from app.keys import Keys
from app.queue import message_template, queue_keys
from app.spool import Entry

PROCESS = "process"
STREAM_FIELDS = (  # the body goes last, beside them: it is the long one
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
)
# Per event: the marker, the fold marker, the queue list and the queue's message hash.
_KEYS_PER_EVENT = 4
_STORED, _DUPLICATE, _FOLDED = 1, 0, 2

RECORD_BATCH = """
local maxlen, ttl, fold_ttl, own_cfg = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local n = tonumber(ARGV[5])
local me = redis.call('GET', KEYS[3])
local out = {}
for i = 1, n do
  local k = 3 + (i - 1) * 4
  local marker, fold_key, qlist, qmsgs = KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4]
  -- meta: {stream fields (name, value, ...), fold, actor, project, received_at};
  -- then the message template ('' for none) and the body.
  local m = cjson.decode(ARGV[3 + i * 3])
  local template = ARGV[4 + i * 3]
  local fields, fold, actor = m[1], m[2], m[3]
  local existing = redis.call('GET', marker)
  if existing then
    out[i] = '0|' .. existing .. '|'
  else
    local own = actor ~= '' and (actor == own_cfg or actor == me)
    local into = false
    if fold == '1' then
      local queued = redis.call('GET', fold_key)
      if queued then
        local qid, qown = string.match(queued, '^(.*)|([01])$')
        if qid and not (qown == '1' and not own) then into = qid end
      end
    end
    if into then
      for j = 1, #fields, 2 do
        if fields[j] == 'outcome' then fields[j + 1] = 'folded: ' .. into end
      end
    end
    fields[#fields + 1] = 'body'
    fields[#fields + 1] = ARGV[5 + i * 3]
    local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', unpack(fields))
    redis.call('SET', marker, id, 'EX', ttl)
    if into then
      out[i] = '2|' .. id .. '|' .. into
    else
      if template ~= '' then
        redis.call('HSET', qmsgs, id, (string.gsub(template, '\\1', id)))
        redis.call('RPUSH', qlist, id)
        if fold == '1' then
          redis.call('SET', fold_key, id .. '|' .. (own and '1' or '0'), 'EX', fold_ttl)
        end
      end
      out[i] = '1|' .. id .. '|'
    end
    if m[4] ~= '' then redis.call('HSET', KEYS[2], m[4], m[5]) end
  end
end
return table.concat(out, ';')
"""


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]


def add_event(keys_of: Keys, entry: Entry, keys: list[str], args: list[Any]) -> None:
    """Append one event's script keys (marker, fold, queue list and hash) and arguments
    (meta JSON, message template, body)."""
    fields: list[str] = []
    for name in STREAM_FIELDS:
        fields += [name, str(entry.get(name) or "")]
    queued = entry["outcome"] == PROCESS
    fold = queued and bool(entry.get("fold"))
    if queued:
        template = message_template(entry["queue"], entry["actor_name"], entry.get("payload", {}))
        list_key, msgs_key = queue_keys(entry["queue"])
    else:
        template, list_key, msgs_key = "", "-", "-"
    fold_key = keys_of.fold(str(entry.get("issue"))) if fold else "-"
    keys += [keys_of.delivery(entry["sha256"]), fold_key, list_key, msgs_key]
    last_webhook = entry["source"] == "plane" and entry["outcome"] != "unknown_project"
    meta = [
        fields,
        "1" if fold else "0",
        str(entry.get("actor") or ""),
        str(entry["project"]) if last_webhook else "",
        str(entry["received_at"]),
    ]
    args += [orjson.dumps(meta), template, str(entry.get("body") or "")]


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
