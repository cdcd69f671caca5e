"""A raw TCP fake for what an HTTP framework will not do: drop a connection mid-answer."""

from __future__ import annotations

import socket
import threading
from collections import deque
from typing import Literal

Plan = Literal["reset", "truncate", "ok"]


class FlakyServer:
    """Answers each connection by the next step of ``plan`` (then ``ok`` forever): ``reset``
    closes without answering, ``truncate`` sends headers and half a body then closes, ``ok``
    answers 201 ``{"id": "raw-N"}``."""

    def __init__(self, plan: list[Plan]) -> None:
        self.plan: deque[Plan] = deque(plan)
        self.connections = 0
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            with conn:
                self.connections += 1
                conn.settimeout(2)
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                step = self.plan.popleft() if self.plan else "ok"
                body = b'{"id": "raw-%d"}' % self.connections
                if step == "reset":
                    conn.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                    )
                    continue
                head = b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
                if step == "truncate":
                    conn.sendall(head + b"Content-Length: 100\r\n\r\n" + body[:5])
                    continue
                conn.sendall(
                    head + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body
                )

    def start(self) -> FlakyServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()
