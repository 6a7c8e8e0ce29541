"""Local receivers for alerts: an SMTP server (aiosmtpd) and a Slack incoming-webhook stand-in.

Used by the tests and by the demo, so a delivered alert can be read back. Each receiver keeps
what it got in memory and, when given a folder, writes each message there as a file
(``mail-N.eml``, ``slack-N.json``) so another process can read it.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


@dataclass
class SmtpReceiver:
    """A real SMTP server on 127.0.0.1 that keeps every message it accepts."""

    host: str = "127.0.0.1"
    port: int = 0
    folder: Path | None = None
    messages: list[EmailMessage] = field(default_factory=list)
    _controller: Any = None

    def start(self) -> SmtpReceiver:
        """Listen (port 0 picks a free port, see .port)."""
        import socket

        from aiosmtpd.controller import Controller

        if self.port == 0:
            with socket.socket() as s:
                s.bind((self.host, 0))
                self.port = s.getsockname()[1]
        receiver = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                msg = message_from_bytes(envelope.content, policy=policy.default)
                receiver.messages.append(msg)
                if receiver.folder is not None:
                    receiver.folder.mkdir(parents=True, exist_ok=True)
                    (receiver.folder / f"mail-{len(receiver.messages)}.eml").write_bytes(envelope.content)
                return "250 Message accepted for delivery"

        self._controller = Controller(Handler(), hostname=self.host, port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        """Stop listening."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


@dataclass
class SlackReceiver:
    """An HTTP server that accepts Slack incoming-webhook posts like Slack does ('ok', 200)."""

    host: str = "127.0.0.1"
    port: int = 0
    folder: Path | None = None
    payloads: list[dict[str, Any]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    fail_next: list[int] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        """The webhook URL to configure (a path shaped like Slack's)."""
        return f"http://{self.host}:{self.port}/services/T000/B000/localsecretwebhooktoken"

    def start(self) -> SlackReceiver:
        """Listen in a background thread."""
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if receiver.fail_next:
                    status = receiver.fail_next.pop(0)
                    self.send_response(status)
                    self.end_headers()
                    self.wfile.write(b"rate_limited" if status == 429 else b"error")
                    return
                try:
                    payload = json.loads(body)
                except ValueError:
                    self.send_response(400)
                    self.end_headers()
                    self.wfile.write(b"invalid_payload")
                    return
                if not isinstance(payload, dict) or not payload.get("text"):
                    self.send_response(400)
                    self.end_headers()
                    self.wfile.write(b"no_text")
                    return
                receiver.payloads.append(payload)
                receiver.paths.append(self.path)
                if receiver.folder is not None:
                    receiver.folder.mkdir(parents=True, exist_ok=True)
                    (receiver.folder / f"slack-{len(receiver.payloads)}.json").write_text(json.dumps(payload, indent=2))
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def body_text(msg: EmailMessage) -> str:
    """The plain-text part of a received email."""
    part = msg.get_body(preferencelist=("plain",))
    return part.get_content() if part is not None else ""
