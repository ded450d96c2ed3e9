"""A fault-injecting HTTP proxy on 127.0.0.1, in front of moto's server, for SNS ``Publish`` calls.

Clients use the proxy's URL as their endpoint. Every request is forwarded to moto unchanged,
except the ``Publish`` calls the plan picks, which get one of:

* ``"drop"``: forwarded (moto accepts the message), then the connection is closed without an
  answer: the client sees a lost response, as after a network cut or a timeout;
* ``"error500"``: forwarded, then answered ``500 InternalError`` (accepted, but reported failed);
* ``"unavailable"``: answered ``503 ServiceUnavailable`` without forwarding;
* ``"throttle"``: answered ``400 Throttling`` without forwarding.

``publishes`` counts the Publish requests that reached the proxy, ``forwarded`` those moto saw.
"""

import http.client
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FAULTS = ("drop", "error500", "unavailable", "throttle")

_ERRORS = {
    "error500": (500, "Receiver", "InternalError", "We encountered an internal error."),
    "unavailable": (503, "Receiver", "ServiceUnavailable", "Service is unavailable."),
    "throttle": (400, "Sender", "Throttling", "Rate exceeded"),
}
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection"}

Plan = Callable[[int], str | None]
"""Fault (or None) for the n-th Publish request (1-based)."""


def every(n: int, fault: str) -> Plan:
    """``fault`` on every n-th Publish."""
    return lambda number: fault if number % n == 0 else None


def cycle(*faults: str | None) -> Plan:
    """The faults in turn, one per Publish (None = no fault), repeating."""
    return lambda number: faults[(number - 1) % len(faults)]


class FaultProxy:
    """The proxy's state: its URL, the plan, and what it saw."""

    def __init__(self, upstream: str, plan: Plan) -> None:
        parsed = urllib.parse.urlsplit(upstream)
        self.upstream = (parsed.hostname or "127.0.0.1", parsed.port or 80)
        self.plan = plan
        self.publishes = 0
        self.forwarded = 0
        self.faults: list[str] = []
        self.lock = threading.Lock()
        self.url = ""

    def decide(self, body: bytes, headers: dict[str, str]) -> str | None:
        target = headers.get("x-amz-target", "")
        is_publish = b"Action=Publish&" in body or body.endswith(b"Action=Publish") or target.endswith(".Publish")
        if not is_publish:
            return None
        with self.lock:
            self.publishes += 1
            fault = self.plan(self.publishes)
            if fault:
                self.faults.append(fault)
            if fault not in ("unavailable", "throttle"):
                self.forwarded += 1
        return fault


def _handler(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # quiet
            return

        def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
            connection = http.client.HTTPConnection(*proxy.upstream, timeout=30)
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                connection.request(self.command, self.path, body=body, headers=headers)
                response = connection.getresponse()
                return response.status, response.getheaders(), response.read()
            finally:
                connection.close()

        def _answer(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
            self.send_response(status)
            for key, value in headers:
                if key.lower() not in _HOP_BY_HOP:
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _handle(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            fault = proxy.decide(body, {k.lower(): v for k, v in self.headers.items()})
            if fault in (None, "drop", "error500"):
                status, headers, answer = self._forward(body)
                if fault is None:
                    self._answer(status, headers, answer)
                    return
                if fault == "drop":
                    self.close_connection = True  # no answer at all: the response is lost
                    return
            status, kind, code, message = _ERRORS[str(fault)]
            xml = (
                f"<ErrorResponse><Error><Type>{kind}</Type><Code>{code}</Code><Message>{message}</Message>"
                f"</Error><RequestId>fault-proxy</RequestId></ErrorResponse>"
            ).encode()
            self._answer(status, [("Content-Type", "text/xml")], xml)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

    return Handler


@contextmanager
def fault_proxy(upstream: str, plan: Plan) -> Iterator[FaultProxy]:
    """Run a :class:`FaultProxy` on a free port of 127.0.0.1 for the ``with`` block."""
    proxy = FaultProxy(upstream, plan)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(proxy))
    server.daemon_threads = True
    proxy.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="fault-proxy", daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
