"""A TCP proxy that tests can cut and restore, to make real outages (after psycopg's
tests/fix_proxy.py). Bytes pass through untouched, so TLS works end to end.

Two kinds of outage: `cut()` closes every connection at once (a broker restart, a refused
port), `blackhole()` stops moving bytes without closing anything (a severed link or a firewall
dropping packets: no FIN, no RST, the peers only notice by their own timeouts)."""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._listener.listen(128)
        self._listener.settimeout(0.1)
        self._up = threading.Event()
        self._up.set()
        self._closing = threading.Event()
        self._frozen = threading.Event()  # blackhole: hold everything, forward nothing
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    def _accept_loop(self) -> None:
        while not self._closing.is_set():
            if self._frozen.is_set():  # new connections hang in the backlog, unanswered
                time.sleep(0.05)
                continue
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if not self._up.is_set():
                client.close()  # an outage: refuse by closing at once
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()

    def _pipe(self, a: socket.socket, b: socket.socket) -> None:
        try:
            while self._up.is_set():
                if self._frozen.is_set():  # bytes pile up in the kernel buffers, as on a dead link
                    time.sleep(0.05)
                    continue
                ready, _, _ = select.select([a, b], [], [], 0.1)
                if self._frozen.is_set():
                    continue
                for src in ready:
                    data = src.recv(65536)
                    if not data:
                        return
                    (b if src is a else a).sendall(data)
        except OSError:
            return
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.close()

    def cut(self) -> None:
        """Drop every connection and refuse new ones until `restore()`."""
        self._up.clear()
        with self._lock:
            for s in self._conns:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
            self._conns.clear()

    def blackhole(self) -> None:
        """Stop forwarding without closing: established connections stall, new ones hang."""
        self._frozen.set()
        time.sleep(0.15)  # a pipe inside its 0.1 s select forwards that last chunk, not later ones

    def restore(self) -> None:
        """End a cut or a blackhole; stalled connections resume where they stopped."""
        self._frozen.clear()
        self._up.set()

    def close(self) -> None:
        self.cut()
        self._closing.set()
        self._listener.close()
        self._thread.join(2)
