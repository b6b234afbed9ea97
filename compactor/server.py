"""``tracelake compactor``: the service alone, with /ready and /metrics on ``server.http_listen_port``."""

from __future__ import annotations

import logging
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from tracelake.backend import open_backend
from tracelake.compactor.service import CompactorService
from tracelake.config import Config

log = logging.getLogger(__name__)


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # the name http.server calls
        if self.path == "/ready":
            self._send(200, b"ready\n", "text/plain")
        elif self.path == "/metrics":
            self._send(200, generate_latest(), CONTENT_TYPE_LATEST)
        else:
            self._send(404, b"not found\n", "text/plain")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # quiet: no access log
        return


def run_compactor(cfg: Config) -> int:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    backend = open_backend(cfg.storage.trace)
    http = ThreadingHTTPServer((cfg.server.http_listen_address, cfg.server.http_listen_port), _Handler)
    threading.Thread(target=http.serve_forever, name="compactor-http", daemon=True).start()
    service = CompactorService(cfg, backend)
    service.start()
    log.info("compactor started", extra={"owner": service.owner, "api_port": cfg.server.http_listen_port})
    stop.wait()
    log.info("compactor stopping")
    service.stop(cfg.server.graceful_shutdown_timeout)
    http.shutdown()
    backend.close()
    return 0
