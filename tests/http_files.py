"""A tiny file server on 127.0.0.1 for the download tests, with the faults they need to reproduce."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


class FileHandler(http.server.BaseHTTPRequestHandler):
    """Serves `files` with Range support; `mode` and `cut_after` inject faults (class-level, reset by `serve`)."""

    files: dict = {}
    requests: list = []
    mode: str = "normal"            # normal | no-length-truncated | no-length | bogus-206 | slow | drip
    cut_after: int | None = None    # bytes sent before the connection is dropped (once)
    protocol_version = "HTTP/1.0"

    def log_message(self, *args):
        pass

    def do_GET(self):
        cls = type(self)
        cls.requests.append((self.path, self.headers.get("Range")))
        body = cls.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        rng = self.headers.get("Range")
        start = int(rng.split("=")[1].rstrip("-")) if rng else 0
        if cls.mode == "bogus-206":   # a partial response that does not start where it was asked to
            self.send_response(206)
            self.send_header("Content-Range", f"bytes 0-{len(body) - 1}/{len(body)}")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if start >= len(body):
            self.send_error(416)
            return
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        if cls.mode in ("no-length-truncated", "no-length"):
            self.end_headers()                              # no Content-Length; truncated: closed early
            self.wfile.write(body[start:len(body) // 2 if cls.mode == "no-length-truncated" else len(body)])
            return
        if cls.mode == "drip":                              # one byte every 0.2 s: each read is quick, the whole slow
            self.send_header("Content-Length", str(len(body) - start))
            self.end_headers()
            try:
                for i in range(start, min(len(body), start + 100)):
                    self.wfile.write(body[i:i + 1])
                    self.wfile.flush()
                    time.sleep(0.2)
            except OSError:                                 # the client gave up: that is the point
                pass
            return
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        if cls.cut_after is not None:
            cut, cls.cut_after = cls.cut_after, None
            self.wfile.write(body[start:start + cut])
            self.wfile.flush()
            return
        step = 32_768 if cls.mode == "slow" else len(body)
        for i in range(start, len(body), step):
            self.wfile.write(body[i:i + step])
            if cls.mode == "slow":
                self.wfile.flush()
                time.sleep(0.02)


@contextmanager
def serve(files: dict[str, bytes]) -> Iterator[str]:
    """Run a FileHandler server for `files` in a thread; yield its base URL; reset the fault settings."""
    FileHandler.files, FileHandler.requests = files, []
    FileHandler.mode, FileHandler.cut_after = "normal", None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FileHandler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
