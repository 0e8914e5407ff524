"""A webhook receiver as a user would write one (docs/webhooks.md): it
verifies each request with the `standardwebhooks` package and answers by
the first segment of the path:

  /ok/...        200
  /flaky/...     500 the first time a webhook-id arrives, then 200
  /gone/...      410 Gone
  /refuse/...    400 with a short body
  /down/...      503
  /slow/S/...    200 after S seconds

A request whose signature does not verify is answered 401, whatever the
path. Every request is appended, before it is answered, as one JSON line
to RECORD_FILE: path, headers, whether it verified (and why not), the
parsed payload, the status answered, and whether another request with the
same webhook-id was being handled at the same time. WEBHOOK_SECRET is the
`whsec_` secret; with TLS_CERT and TLS_KEY (PEM files) it serves HTTPS.
Prints `PORT <n>` once listening on 127.0.0.1."""

import json
import os
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

webhook = Webhook(os.environ["WEBHOOK_SECRET"])
record_file = os.environ["RECORD_FILE"]

lock = threading.Lock()
seen_ids = set()
in_progress = {}


def record(entry):
    with lock:
        with open(record_file, "a", encoding="utf-8") as out:
            out.write(json.dumps(entry) + "\n")
            out.flush()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        headers = dict(self.headers.items())
        webhook_id = self.headers.get("webhook-id")
        with lock:
            concurrent = in_progress.get(webhook_id, 0) > 0
            in_progress[webhook_id] = in_progress.get(webhook_id, 0) + 1
            first_time = webhook_id not in seen_ids
            seen_ids.add(webhook_id)
        try:
            entry = {
                "path": self.path,
                "webhook_id": webhook_id,
                "webhook_timestamp": self.headers.get("webhook-timestamp"),
                "content_type": self.headers.get("content-type"),
                "concurrent": concurrent,
                "received_at": time.time(),
            }
            try:
                entry["payload"] = webhook.verify(body, headers)
                entry["verified"] = True
            except WebhookVerificationError as e:
                entry["verified"] = False
                entry["error"] = str(e)
            status, text = self.answer(entry["verified"], first_time)
            entry["answered"] = status
            record(entry)
            reply = text.encode()
            self.send_response(status)
            self.send_header("content-type", "text/plain")
            self.send_header("content-length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)
        finally:
            with lock:
                in_progress[webhook_id] -= 1

    def answer(self, verified, first_time):
        if not verified:
            return 401, "bad signature"
        parts = self.path.strip("/").split("/")
        kind = parts[0]
        if kind == "ok":
            return 200, ""
        if kind == "flaky":
            return (500, "try again") if first_time else (200, "")
        if kind == "gone":
            return 410, "this endpoint was removed"
        if kind == "refuse":
            return 400, "unknown payload"
        if kind == "down":
            return 503, "down for maintenance"
        if kind == "slow":
            time.sleep(float(parts[1]))
            return 200, ""
        return 404, "no such path"


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
if os.environ.get("TLS_CERT"):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(os.environ["TLS_CERT"], os.environ["TLS_KEY"])
    server.socket = context.wrap_socket(server.socket, server_side=True)
print(f"PORT {server.server_address[1]}", flush=True)
try:
    server.serve_forever()
except KeyboardInterrupt:
    sys.exit(0)
