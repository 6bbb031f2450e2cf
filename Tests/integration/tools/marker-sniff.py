#!/usr/bin/env python3
"""Counts the packets of every interface of the namespace it runs in (AF_PACKET) and how many
carry MARKER, until STOP_FILE exists, SECONDS pass or MAX_BYTES were seen (bounded). Prints
"packets bytes with_marker". Used by t-dmsg*.sh: plaintext must never cross the relay."""
import os
import socket
import sys
import time

marker, stop = sys.argv[1].encode(), sys.argv[2]
seconds, max_bytes = float(sys.argv[3]), int(sys.argv[4])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(3))
# A large buffer (root: SO_RCVBUFFORCE): on a loaded machine the reader falls behind a fast transfer.
RCVBUF = 64 * 1024 * 1024
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
try:
    s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
except OSError:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
s.settimeout(0.5)
seen = packets = total = 0
end = time.time() + seconds
while time.time() < end and not os.path.exists(stop):
    try:
        p = s.recv(65536)
    except socket.timeout:
        continue
    packets += 1
    total += len(p)
    if marker in p:
        seen += 1
    if total > max_bytes:
        break
print(packets, total, seen, flush=True)
