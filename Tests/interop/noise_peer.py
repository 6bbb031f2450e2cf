#!/usr/bin/env python3
"""An independent stcpr peer (docs/PROTOCOL.md sections 2, 3, 5) on the `noiseprotocol` package.

  noise_peer.py --dial HOST:PORT --remote-pk HEX --seed-hex HEX
      Initiator: Noise_IK handshake with identity claim, sends a mux PING, expects the PONG echo,
      prints `interop ok <remote pk>` and exits 0.
  noise_peer.py --listen HOST:PORT --seed-hex HEX
      Responder: prints `listening HOST:PORT` (PORT may be 0: the chosen port is printed), accepts
      one connection, prints `peer <claimed Ed25519 pk>`, answers every PING with a PONG until the
      peer closes, then prints `interop ok <claimed pk>` and exits 0 (if at least one PING came).

Any failure exits non-zero with a message on stderr; everything is bounded by --timeout seconds.
Dependencies: Tests/interop/requirements.txt (see the install command there).
"""

import argparse
import hashlib
import socket
import struct
import sys
import time
import warnings

from noise.connection import Keypair, NoiseConnection

import skywire_keys

PROTOCOL_NAME = b"Noise_IK_25519_ChaChaPoly_BLAKE2b"
PROLOGUE = b"skywire-swift/1"
CLAIM_VERSION = 0x02
TAI64N_LEN = 12
TAI64N_EPOCH = (1 << 62) + 10
TAI64N_GRANULE = 1 << 24
CLAIM_LEN = 1 + 32 + TAI64N_LEN
MESSAGE1_LEN = 32 + 48 + CLAIM_LEN + 16  # 141
MAC_LEN = 16
MAC1_LABEL = b"mac1----"
MESSAGE2_LEN = 32 + 16  # 48
CONFIRMATION_LEN = 16  # an empty transport message: the tag only
LENGTH_PREFIX = struct.Struct(">H")
MAX_MESSAGE = 65535
FRAME_PING = 0x09
FRAME_PONG = 0x0A
PING_OPAQUE_LEN = 8
MAX_PINGS_ANSWERED = 1000


class PeerError(Exception):
    pass


def parse_hostport(text):
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise PeerError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def parse_hex(text, length, what):
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise PeerError(f"{what}: not hex")
    if len(raw) != length or text != text.lower():
        raise PeerError(f"{what}: expected {length} bytes of lowercase hex")
    return raw


def recv_exact(sock, n, deadline):
    buf = bytearray()
    while len(buf) < n:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise PeerError("timed out")
        sock.settimeout(remaining)
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None if not buf else _short(len(buf), n)
        buf += chunk
    return bytes(buf)


def _short(got, want):
    raise PeerError(f"connection closed mid-frame ({got} of {want} bytes)")


def recv_frame(sock, deadline):
    """One section 3 frame: 2-byte big-endian length L (1..65535), then L bytes. None on clean EOF."""
    header = recv_exact(sock, LENGTH_PREFIX.size, deadline)
    if header is None:
        return None
    (length,) = LENGTH_PREFIX.unpack(header)
    if length == 0:
        raise PeerError("zero-length frame")
    body = recv_exact(sock, length, deadline)
    if body is None:
        raise PeerError("connection closed mid-frame")
    return body


def send_frame(sock, message):
    if not 1 <= len(message) <= MAX_MESSAGE:
        raise PeerError(f"cannot frame a message of {len(message)} bytes")
    sock.sendall(LENGTH_PREFIX.pack(len(message)) + bytes(message))


def tai64n_now():
    """PROTOCOL.md section 2: TAI64N, nanoseconds rounded down to a multiple of 2^24."""
    ns = time.time_ns()
    return struct.pack(">QI", TAI64N_EPOCH + ns // 1_000_000_000, (ns % 1_000_000_000) & ~(TAI64N_GRANULE - 1))


def mac1(responder_x25519_pk, message):
    """PROTOCOL.md section 2.1: keyed BLAKE2b-128 under BLAKE2b-256("mac1----" || Spub_r)."""
    key = hashlib.blake2b(MAC1_LABEL + responder_x25519_pk, digest_size=32).digest()
    return hashlib.blake2b(message, key=key, digest_size=MAC_LEN).digest()


def new_connection(seed, initiator):
    skywire_keys.self_check(seed)
    conn = NoiseConnection.from_name(PROTOCOL_NAME)
    if initiator:
        conn.set_as_initiator()
    else:
        conn.set_as_responder()
    conn.set_prologue(PROLOGUE)
    conn.set_keypair_from_private_bytes(Keypair.STATIC, skywire_keys.x25519_secret_from_seed(seed))
    return conn


def dial(args, deadline):
    seed = parse_hex(args.seed_hex, 32, "--seed-hex")
    remote_pk = parse_hex(args.remote_pk, 32, "--remote-pk")
    own_pk = skywire_keys.ed25519_public_from_seed(seed)
    conn = new_connection(seed, initiator=True)
    remote_x25519 = skywire_keys.x25519_public_from_ed25519(remote_pk)
    conn.set_keypair_from_public_bytes(Keypair.REMOTE_STATIC, remote_x25519)
    conn.start_handshake()
    host, port = parse_hostport(args.dial)
    with socket.create_connection((host, port), timeout=max(deadline - time.monotonic(), 0.1)) as sock:
        message1 = conn.write_message(bytes([CLAIM_VERSION]) + own_pk + tai64n_now())
        if len(message1) != MESSAGE1_LEN:
            raise PeerError(f"message 1 is {len(message1)} bytes, expected {MESSAGE1_LEN}")
        send_frame(sock, bytes(message1) + mac1(remote_x25519, bytes(message1)))
        message2 = recv_frame(sock, deadline)
        if message2 is None:
            raise PeerError("responder closed the connection instead of answering message 1")
        if len(message2) != MESSAGE2_LEN:
            raise PeerError(f"message 2 is {len(message2)} bytes, expected {MESSAGE2_LEN}")
        payload = conn.read_message(message2)
        if payload:
            raise PeerError(f"message 2 payload should be empty, got {len(payload)} bytes")
        if not conn.handshake_finished:
            raise PeerError("handshake not finished after message 2")
        send_frame(sock, conn.encrypt(b""))  # the confirmation (section 3)

        opaque = bytes(range(1, PING_OPAQUE_LEN + 1))
        send_frame(sock, conn.encrypt(bytes([FRAME_PING]) + opaque))
        reply = recv_frame(sock, deadline)
        if reply is None:
            raise PeerError("connection closed before PONG")
        frame = conn.decrypt(reply)
        if frame != bytes([FRAME_PONG]) + opaque:
            raise PeerError(f"expected PONG echoing {opaque.hex()}, got {bytes(frame).hex()}")
    print(f"interop ok {remote_pk.hex()}", flush=True)


def listen(args, deadline):
    seed = parse_hex(args.seed_hex, 32, "--seed-hex")
    own_x25519 = skywire_keys.x25519_public_from_ed25519(skywire_keys.ed25519_public_from_seed(seed))
    conn = new_connection(seed, initiator=False)
    conn.start_handshake()
    host, port = parse_hostport(args.listen)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind((host, port))
        server.listen(1)
        print(f"listening {host}:{server.getsockname()[1]}", flush=True)
        server.settimeout(max(deadline - time.monotonic(), 0.1))
        try:
            sock, _ = server.accept()
        except socket.timeout:
            raise PeerError("timed out waiting for a connection")
    with sock:
        message1 = recv_frame(sock, deadline)
        if message1 is None:
            raise PeerError("initiator closed before message 1")
        if len(message1) != MESSAGE1_LEN + MAC_LEN:
            raise PeerError(f"message 1 record is {len(message1)} bytes, expected {MESSAGE1_LEN + MAC_LEN}")
        message1, received_mac1 = message1[:MESSAGE1_LEN], message1[MESSAGE1_LEN:]
        if mac1(own_x25519, bytes(message1)) != bytes(received_mac1):
            raise PeerError("message 1 has a wrong mac1")
        claim = bytes(conn.read_message(message1))
        noise_rs = conn.noise_protocol.handshake_state.rs.public_bytes
        if len(claim) != CLAIM_LEN or claim[0] != CLAIM_VERSION:
            raise PeerError(f"malformed identity claim {claim.hex()}")
        claimed = claim[1:33]
        if skywire_keys.x25519_public_from_ed25519(claimed) != noise_rs:
            raise PeerError("identity claim does not match the Noise static key")
        print(f"peer {claimed.hex()}", flush=True)
        send_frame(sock, conn.write_message(b""))
        if not conn.handshake_finished:
            raise PeerError("handshake not finished after message 2")
        confirmation = recv_frame(sock, deadline)
        if confirmation is None or len(confirmation) != CONFIRMATION_LEN or conn.decrypt(confirmation) != b"":
            raise PeerError("expected the initiator's empty confirmation message")

        answered = 0
        while answered < MAX_PINGS_ANSWERED:
            message = recv_frame(sock, deadline)
            if message is None:
                break
            frame = bytes(conn.decrypt(message))
            if len(frame) == 1 + PING_OPAQUE_LEN and frame[0] == FRAME_PING:
                send_frame(sock, conn.encrypt(bytes([FRAME_PONG]) + frame[1:]))
                answered += 1
            else:
                print(f"ignoring frame {frame[:16].hex()}", file=sys.stderr, flush=True)
        if answered == 0:
            raise PeerError("peer closed without sending a PING")
    print(f"interop ok {claimed.hex()}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--dial", metavar="HOST:PORT")
    mode.add_argument("--listen", metavar="HOST:PORT")
    parser.add_argument("--remote-pk", metavar="HEX", help="responder's Ed25519 public key (with --dial)")
    parser.add_argument("--seed-hex", metavar="HEX", required=True, help="our 32-byte Ed25519 seed")
    parser.add_argument("--timeout", type=float, default=20.0, help="overall limit in seconds")
    args = parser.parse_args()
    deadline = time.monotonic() + args.timeout
    warnings.simplefilter("ignore")
    try:
        if args.dial:
            if not args.remote_pk:
                raise PeerError("--dial needs --remote-pk")
            dial(args, deadline)
        else:
            listen(args, deadline)
    except (PeerError, OSError, ValueError) as error:
        print(f"noise_peer: error: {error}", file=sys.stderr, flush=True)
        return 1
    except Exception as error:  # noiseprotocol raises its own exception types on bad input
        print(f"noise_peer: error: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
