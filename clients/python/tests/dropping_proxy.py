"""A TCP proxy in front of the agent that can lose answers, as a broken network does.

``drop_answers(n)`` arms it: for the next ``n`` answers, it lets the request reach the
agent, waits until the agent starts answering (so the call has run), then closes the
caller's connection without passing the answer on. The caller sees the connection drop
(``httpx.RemoteProtocolError``) after the tool ran.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from types import TracebackType
from urllib.parse import urlsplit

_CHUNK = 65536
_JOIN_TIMEOUT_S = 5.0


class DroppingProxy:
    """Listens on 127.0.0.1 (port 0) and forwards every connection to ``upstream_url``."""

    def __init__(self, upstream_url: str) -> None:
        upstream = urlsplit(upstream_url)
        self._upstream = (upstream.hostname or "127.0.0.1", upstream.port or 80)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._lock = threading.Lock()
        self._to_drop = 0
        self.dropped = 0
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._spawn(self._accept_loop)

    def drop_answers(self, count: int = 1) -> None:
        """Loses the next ``count`` answers."""
        with self._lock:
            self._to_drop = count

    def _take_drop(self) -> bool:
        with self._lock:
            if self._to_drop == 0:
                return False
            self._to_drop -= 1
            self.dropped += 1
            return True

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        while True:
            try:
                caller, _ = self._listener.accept()
            except OSError:  # closed
                return
            agent = socket.create_connection(self._upstream)
            with self._lock:
                self._sockets += [caller, agent]
            self._spawn(self._pump, caller, agent, False)
            self._spawn(self._pump, agent, caller, True)

    def _pump(self, source: socket.socket, sink: socket.socket, answers: bool) -> None:
        try:
            while data := source.recv(_CHUNK):
                if answers and self._take_drop():
                    break
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        """Stops listening, closes every connection, and waits for the threads."""
        with contextlib.suppress(OSError):  # shutdown wakes the blocked accept() on Linux
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in self._threads:
            thread.join(_JOIN_TIMEOUT_S)
            assert not thread.is_alive(), "a proxy thread did not end"

    def __enter__(self) -> DroppingProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
