"""A TCP relay on loopback whose traffic can be held: a database connection that goes
silent (a half-open connection, a host gone) without either end closing it. What is
held is kept, so a test can see what a client was sending when it stopped."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class FreezableRelay:
    """127.0.0.1:`port` relayed to 127.0.0.1:`target`, until `freeze`."""

    def __init__(self, target: int) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._flowing = threading.Event()
        self._flowing.set()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = [self._listener]
        self._held: list[bytes] = []
        self._closed = False
        threading.Thread(target=self._accept, name="relay-accept", daemon=True).start()

    def freeze(self) -> None:
        """From now on nothing passes, either way; what arrives is held."""
        self._flowing.clear()

    def holds(self, needle: bytes) -> bool:
        """Whether a held chunk contains `needle`."""
        with self._lock:
            return any(needle in chunk for chunk in self._held)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            sockets, self._sockets = self._sockets, []
        self._flowing.set()
        for sock in sockets:
            sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                return
            with self._lock:
                self._sockets += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                if not self._flowing.is_set():
                    with self._lock:
                        self._held.append(data)
                    self._flowing.wait()
                if self._closed:
                    return
                dst.sendall(data)
        except OSError:
            pass


@contextmanager
def freezable_relay(target: int) -> Iterator[FreezableRelay]:
    relay = FreezableRelay(target)
    try:
        yield relay
    finally:
        relay.close()
