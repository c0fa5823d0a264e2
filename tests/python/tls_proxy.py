#!/usr/bin/env python3
"""A TLS-terminating proxy for tests/tls.rs: accepts TLS on 127.0.0.1 with the given
certificate and key (Python's `ssl` module, i.e. OpenSSL, independent of the client's rustls)
and relays the plain bytes to the real `grantline serve`, as a reverse proxy in front of a
deployment would.

usage: tls_proxy.py CERT KEY BACKEND_PORT LIFETIME_S
Prints "listening PORT" once it accepts connections. It exits by itself after LIFETIME_S
seconds; the test kills it earlier. Every wait is bounded.
"""
import select
import socket
import ssl
import sys
import threading
import time

HANDSHAKE_TIMEOUT_S = 10
IDLE_TIMEOUT_S = 30
ACCEPT_POLL_S = 0.5
CHUNK_BYTES = 65536


def relay(tls, upstream):
    """Copies bytes both ways until either side closes or stays idle too long."""
    while True:
        if tls.pending():
            readable = [tls]
        else:
            readable, _, _ = select.select([tls, upstream], [], [], IDLE_TIMEOUT_S)
        if not readable:
            return
        for sock in readable:
            other = upstream if sock is tls else tls
            try:
                data = sock.recv(CHUNK_BYTES)
            except ssl.SSLWantReadError:
                continue
            except OSError:
                return
            if not data:
                return
            try:
                other.sendall(data)
            except OSError:
                return


def serve_one(raw, context, backend_port):
    raw.settimeout(HANDSHAKE_TIMEOUT_S)
    try:
        tls = context.wrap_socket(raw, server_side=True)
    except (ssl.SSLError, OSError):
        # A client that does not trust the certificate aborts the handshake: expected.
        raw.close()
        return
    try:
        tls.settimeout(IDLE_TIMEOUT_S)
        with socket.create_connection(("127.0.0.1", backend_port), timeout=HANDSHAKE_TIMEOUT_S) as upstream:
            upstream.settimeout(IDLE_TIMEOUT_S)
            relay(tls, upstream)
    except OSError:
        pass
    finally:
        tls.close()


def main():
    cert, key, backend_port, lifetime_s = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.settimeout(ACCEPT_POLL_S)
    print(f"listening {listener.getsockname()[1]}", flush=True)
    deadline = time.monotonic() + lifetime_s
    while time.monotonic() < deadline:
        try:
            raw, _ = listener.accept()
        except socket.timeout:
            continue
        threading.Thread(target=serve_one, args=(raw, context, backend_port), daemon=True).start()
    listener.close()


if __name__ == "__main__":
    main()
