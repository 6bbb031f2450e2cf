#!/usr/bin/env python3
"""Serves the files of DIR over HTTP/1.0 at ADDR:PORT, each response paced to RATE bytes per
second by the server itself (16 KiB, then a sleep), so a download lasts size / RATE seconds
whatever the client buffers (curl's --limit-rate averages over seconds and let an 8 MB transfer
finish in a few). Serves at most MAX_SECONDS, then exits. Used by t-dmsg-nat.sh."""
import http.server
import os
import socketserver
import sys
import threading
import time

directory, addr, port, rate, max_seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
CHUNK = 16 * 1024


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        name = os.path.basename(self.path.split("?", 1)[0])
        path = os.path.join(directory, name)
        if not name or not os.path.isfile(path):
            self.send_error(404)
            return
        size = os.path.getsize(path)
        self.send_response(200)
        self.send_header("Content-Length", str(size))
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        start = time.monotonic()
        sent = 0
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                self.wfile.write(chunk)
                sent += len(chunk)
                ahead = sent / rate - (time.monotonic() - start)
                if ahead > 0:
                    time.sleep(ahead)

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


server = Server((addr, port), Handler)
threading.Timer(max_seconds, server.shutdown).start()
server.serve_forever()
