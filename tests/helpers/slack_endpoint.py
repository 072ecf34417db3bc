"""Real HTTP endpoints standing in for Slack: an incoming webhook (``SlackEndpoint``) or the Web API's
``chat.postMessage`` (``SlackEndpoint(api=True)``, the URL to give a ``slack`` connection as its ``base_url``
extra). Each records every payload; the webhook URL and the API token look like secrets (tests grep logs for
them). ``behaviour``: "ok", "error" (the webhook answers 500, the API ``{"ok": false}``) or "hang" (no answer
until the endpoint is closed)."""

import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class SlackEndpoint:
    def __init__(self, api: bool = False, behaviour: str = "ok"):
        assert behaviour in ("ok", "error", "hang"), behaviour
        self.payloads: list[dict] = []
        self.requests = 0
        self.api = api
        self.behaviour = behaviour
        self.token = ("xoxb-test-" if api else "xoxtest") + secrets.token_hex(12)
        self._released = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                outer.requests += 1
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if outer.behaviour == "hang":
                    outer._released.wait(120)
                    return
                payload = json.loads(body or b"{}")
                if outer.api:
                    # the Web API takes blocks and attachments as JSON text too (slack_sdk sends them so): read
                    # them as Slack does
                    for field in ("blocks", "attachments"):
                        if isinstance(payload.get(field), str):
                            payload[field] = json.loads(payload[field])
                    authorised = self.headers.get("Authorization") == f"Bearer {outer.token}"
                    ok = authorised and outer.behaviour == "ok" and self.path == "/api/chat.postMessage"
                    if ok:
                        outer.payloads.append({"path": self.path, **payload})
                    answer = (
                        {"ok": True, "channel": payload.get("channel"), "ts": "1.000001"}
                        if ok
                        else {"ok": False, "error": "invalid_auth" if not authorised else "internal_error"}
                    )
                    self._answer(200, "application/json", json.dumps(answer).encode())
                elif outer.behaviour == "error":
                    self._answer(500, "text/plain", b"internal_error")
                else:
                    outer.payloads.append({"path": self.path, **payload})
                    self._answer(200, "text/plain", b"ok")

            def _answer(self, status: int, kind: str, data: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        base = f"http://127.0.0.1:{self.server.server_port}"
        self.url = f"{base}/api/" if api else f"{base}/services/T0TEST/B0TEST/{self.token}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def connection(self, channel: str = "#mlops-test") -> dict:
        """The Airflow connection (as for ``AIRFLOW_CONN_SLACK_DEFAULT``) that points at this endpoint."""
        if self.api:
            return {"conn_type": "slack", "password": self.token, "extra": {"base_url": self.url, "channel": channel}}
        return {"conn_type": "slackwebhook", "password": self.url}

    def texts(self) -> list[str]:
        return [p.get("text", "") for p in self.payloads]

    def close(self):
        self._released.set()
        self.server.shutdown()
        self.server.server_close()
