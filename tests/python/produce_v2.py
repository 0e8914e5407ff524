"""Writes activities to the stream as version 2 entries, as a producer in
Python would (docs/wire-format.md): one entry of two events, one entry
whose second line is not a valid event, then one entry of two events
compressed as an LZ4 frame (`codec` = `lz4`, with the `lz4` package).
Prints the ids of the valid events of the first and last entries.
REDIS_URL and STREAM_KEY come from the environment."""

import datetime
import json
import os
import uuid

import lz4.frame
import redis


def activity(user_id, action, **fields):
    return {
        "v": 1,
        "id": str(uuid.uuid4()),
        "user_id": user_id,
        "action": action,
        "created_at": datetime.datetime.now(datetime.timezone.utc)
        .isoformat(timespec="microseconds")
        .replace("+00:00", "Z"),
        **fields,
    }


key = os.environ.get("STREAM_KEY", "user_activities_stream")
r = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379"))

events = [
    activity("user-123", "login", ip_address="192.168.1.100"),
    activity("user-123", "case_view", resource_type="case", resource_id="case-456"),
]
r.xadd(
    key,
    {"n": len(events), "events": "\n".join(json.dumps(e) for e in events)},
    maxlen=1_000_000 // len(events),
    approximate=True,
)

lines = [json.dumps(activity("user-7", "logout")), '{"action": 5}', json.dumps(activity("user-7", "login"))]
r.xadd(key, {"n": len(lines), "events": "\r\n".join(lines) + "\n"})
compressed = [activity("user-9", "login"), activity("user-9", "case_view", resource_type="case", resource_id="case-9")]
r.xadd(
    key,
    {
        "n": len(compressed),
        "codec": "lz4",
        "events": lz4.frame.compress("\n".join(json.dumps(e) for e in compressed).encode()),
    },
)
print(json.dumps([e["id"] for e in events + compressed]))
