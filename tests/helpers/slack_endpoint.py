"""A real HTTP endpoint standing in for Slack's incoming webhook: records every payload; its URL carries a
secret-looking token (tests grep logs for it)."""

import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class SlackEndpoint:
    def __init__(self):
        self.payloads: list[dict] = []
        self.token = "xoxtest" + secrets.token_hex(12)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.payloads.append({"path": self.path, **json.loads(body or b"{}")})
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/services/T0TEST/B0TEST/{self.token}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def texts(self) -> list[str]:
        return [p.get("text", "") for p in self.payloads]

    def close(self):
        self.server.shutdown()
        self.server.server_close()
