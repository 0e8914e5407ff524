"""Sends track, page, identify and an anonymous track through the real
Segment Python SDK (segment-analytics-python), unmodified but for its host
and write key, then prints what the test must find stored.

Environment: INGEST_HOST (http://127.0.0.1:PORT), WRITE_KEY, PREFIX (of
the message ids), GZIP (1: gzip bodies).
"""

import json
import os
import sys
import uuid
from datetime import datetime, timezone

from segment.analytics import Client

errors = []


def on_error(error, batch):
    errors.append(f"{error} ({len(batch)} events)")


client = Client(
    os.environ["WRITE_KEY"],
    host=os.environ["INGEST_HOST"],
    gzip=os.environ.get("GZIP") == "1",
    on_error=on_error,
)
prefix = os.environ["PREFIX"]
at = datetime(2026, 11, 30, 9, 15, 0, 123000, tzinfo=timezone.utc)
client.track(
    user_id="user-42",
    event="case_view",
    properties={"resource_type": "case", "resource_id": "case-7", "amount": 12.5},
    context={"userAgent": "Mozilla/5.0 (Python test)", "sessionId": "sess-1", "ip": "203.0.113.9"},
    timestamp=at,
    message_id=f"{prefix}-track",
)
client.page(
    user_id="user-42",
    category="Docs",
    name="Pricing",
    properties={"url": "https://example.com/pricing"},
    timestamp=at,
    message_id=f"{prefix}-page",
)
client.identify(user_id="user-42", traits={"email": "user42@example.com"}, message_id=f"{prefix}-identify")
anonymous = str(uuid.uuid4())
client.track(anonymous_id="anon-9", event="signup_started", message_id=anonymous)
client.shutdown()
if errors:
    print("\n".join(errors), file=sys.stderr)
    sys.exit(1)
print(json.dumps({"anonymous_id": anonymous}))
