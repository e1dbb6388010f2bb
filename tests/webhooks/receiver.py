#!/usr/bin/env python3
"""A webhook receiver for tally's end-to-end tests: verifies every request with an implementation of the Standard
Webhooks specification that is not tally's (the `standardwebhooks` package from PyPI), and misbehaves on purpose.

- `POST /hook/<name>`: a delivery for endpoint <name>. It is verified with that endpoint's secret (given to
  `POST /secrets` first); then, by chance, answered 500 (`--fail-rate`), or held past tally's timeout
  (`--hang-rate`, `--hang-seconds`) and answered 200 too late, or answered 200 at once (delivered). A request for
  a message that failed `--max-failures` times in a row is answered 200, so every message ends delivered within
  tally's retry schedule. `--slow` delays every answer.
- `POST /secrets`: `{"<name>": "whsec_…"}` (the secrets tally answered once).
- `GET /stats`: per endpoint, the delivered ids (answered 2xx in time), requests, refusals, hangs, signatures that
  did not verify, requests being handled now (`in_flight`), requests for a message already in flight at that endpoint (`overlaps`: an attempt made twice at
  once), per-id request counts, and whether every delivery of an id had the same body.

Prints `listening on PORT` when ready. Usage: receiver.py [--port 0] [--fail-rate 0.5] [--hang-rate 0.01]
[--hang-seconds 2] [--max-failures 4] [--slow 0] [--seed 1]
"""
import argparse
import json
import random
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, default=0)
parser.add_argument("--fail-rate", type=float, default=0.5)
parser.add_argument("--hang-rate", type=float, default=0.01)
parser.add_argument("--hang-seconds", type=float, default=2.0)
parser.add_argument("--max-failures", type=int, default=4)
parser.add_argument("--slow", type=float, default=0.0)
parser.add_argument("--seed", type=int, default=1)
args = parser.parse_args()

rng = random.Random(args.seed)
lock = threading.Lock()
secrets = {}
state = {}


def endpoint(name):
    return state.setdefault(name, {"delivered": set(), "requests": 0, "refused": 0, "hangs": 0, "bad_signature": 0,
                                   "overlaps": 0, "in_flight": set(), "failures": {}, "per_id": {}, "bodies": {},
                                   "same_body": True, "errors": []})


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def answer(self, status, body=b"ok"):
        try:
            self.send_response(status)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_GET(self):
        if self.path != "/stats":
            return self.answer(404)
        with lock:
            out = {name: {"delivered": sorted(s["delivered"]), "requests": s["requests"], "refused": s["refused"],
                          "hangs": s["hangs"], "bad_signature": s["bad_signature"], "overlaps": s["overlaps"],
                          "per_id": s["per_id"], "same_body": s["same_body"], "errors": s["errors"][:5],
                          "in_flight": len(s["in_flight"])}
                   for name, s in state.items()}
        self.answer(200, json.dumps(out).encode())

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        if self.path == "/secrets":
            with lock:
                secrets.update(json.loads(body))
            return self.answer(200)
        if not self.path.startswith("/hook/"):
            return self.answer(404)
        name = self.path[len("/hook/"):]
        msg_id = self.headers.get("webhook-id", "")
        with lock:
            s = endpoint(name)
            s["requests"] += 1
            s["per_id"][msg_id] = s["per_id"].get(msg_id, 0) + 1
            if msg_id in s["in_flight"]:
                s["overlaps"] += 1
            s["in_flight"].add(msg_id)
            first = s["bodies"].setdefault(msg_id, body)
            if first != body:
                s["same_body"] = False
            secret = secrets.get(name)
        try:
            try:
                payload = Webhook(secret).verify(body, dict(self.headers.items()))
                if payload.get("type") is None or "data" not in payload or "timestamp" not in payload:
                    raise WebhookVerificationError("the body is not {type, timestamp, data}")
            except Exception as e:  # a bad signature, a stale timestamp, a missing secret
                with lock:
                    s["bad_signature"] += 1
                    s["errors"].append(f"{msg_id}: {e!r}")
                return self.answer(400, b"bad signature")
            if args.slow:
                time.sleep(args.slow)
            with lock:
                failed = s["failures"].get(msg_id, 0)
                roll = rng.random()
            if failed < args.max_failures and roll < args.hang_rate:
                with lock:
                    s["hangs"] += 1
                    s["failures"][msg_id] = failed + 1
                    # tally gives up on this attempt at its timeout: from then on a retry is not an overlap.
                    s["in_flight"].discard(msg_id)
                time.sleep(args.hang_seconds)
                return self.answer(200, b"too late")
            if failed < args.max_failures and roll < args.hang_rate + args.fail_rate:
                with lock:
                    s["refused"] += 1
                    s["failures"][msg_id] = failed + 1
                return self.answer(500, b"try again")
            with lock:
                s["delivered"].add(msg_id)
                s["failures"][msg_id] = 0
            return self.answer(200, b"thanks")
        finally:
            with lock:
                s["in_flight"].discard(msg_id)


ThreadingHTTPServer.request_queue_size = 256
server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
server.daemon_threads = True
print(f"listening on {server.server_address[1]}", flush=True)
server.serve_forever()
