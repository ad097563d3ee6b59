"""A webhook receiver written only from the Standard Webhooks specification: it verifies every
delivery with the PyPI `standardwebhooks` package and records what it got, one JSON line a
delivery attempt, in the log file.

    webhook_receiver.py PORT SECRET_FILE LOG_FILE FAIL_FIRST

The secret is read from SECRET_FILE at each request (the endpoint is registered, and its secret
known, only after the receiver is up). The first FAIL_FIRST attempts of each message are answered
500, so the sender has to retry.
"""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

port, secret_file, log_file, fail_first = (
    int(sys.argv[1]),
    sys.argv[2],
    sys.argv[3],
    int(sys.argv[4]),
)
attempts = {}
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        try:
            with open(secret_file) as f:
                secret = f.read().strip()
            payload = Webhook(secret).verify(body, dict(self.headers))
            verified, error = True, None
        except (WebhookVerificationError, OSError, ValueError) as e:
            payload, verified, error = None, False, str(e)
        msg_id = self.headers.get("webhook-id")
        with lock:
            attempts[msg_id] = attempts.get(msg_id, 0) + 1
            attempt = attempts[msg_id]
            status = 401 if not verified else (500 if attempt <= fail_first else 204)
            with open(log_file, "a") as log:
                log.write(
                    json.dumps(
                        {
                            "id": msg_id,
                            "attempt": attempt,
                            "verified": verified,
                            "error": error,
                            "status": status,
                            "type": payload and payload.get("type"),
                            "data": payload and payload.get("data"),
                        }
                    )
                    + "\n"
                )
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
