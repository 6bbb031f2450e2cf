#!/usr/bin/env python3
"""Runs the `noiseprotocol` package against the cacophony vectors the Swift engine is tested with
(Tests/SkywireCryptoTests/Vectors), to show the Python interop peer is a correct Noise reference.

By default only the IK vectors (IK, IKpsk1, IKpsk2); --all runs every vector whose pattern
noiseprotocol implements (fundamental patterns and psk modifiers; it has no deferred patterns).
Exits 0 when every selected vector matches byte for byte.
"""

import argparse
import json
import os
import re
import sys
import warnings

from noise.connection import Keypair, NoiseConnection

DEFAULT_VECTORS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "SkywireCryptoTests", "Vectors",
                               "noise-25519-chachapoly-blake2b.json")
# noiseprotocol implements the fundamental patterns with pskN modifiers, not the deferred ones.
SUPPORTED = re.compile(r"^Noise_(N|K|X|NN|NK|NX|XN|XK|XX|KN|KK|KX|IN|IK|IX)(psk\d(\+psk\d)*)?_25519_ChaChaPoly_BLAKE2b$")
IK_ONLY = re.compile(r"^Noise_IK(psk\d)?_")
ONE_WAY = {"N", "K", "X"}


def connection(vector, side, initiator):
    conn = NoiseConnection.from_name(vector["protocol_name"].encode())
    conn.set_as_initiator() if initiator else conn.set_as_responder()
    conn.set_prologue(bytes.fromhex(vector[f"{side}_prologue"]))
    if f"{side}_psks" in vector:
        conn.set_psks(psks=[bytes.fromhex(p) for p in vector[f"{side}_psks"]])
    for field, slot in (("static", Keypair.STATIC), ("ephemeral", Keypair.EPHEMERAL)):
        if f"{side}_{field}" in vector:
            conn.set_keypair_from_private_bytes(slot, bytes.fromhex(vector[f"{side}_{field}"]))
    if f"{side}_remote_static" in vector:
        conn.set_keypair_from_public_bytes(Keypair.REMOTE_STATIC, bytes.fromhex(vector[f"{side}_remote_static"]))
    conn.start_handshake()
    return conn


def run(vector):
    name = vector["protocol_name"]
    one_way = name.split("_")[1].rstrip("0123456789psk+") in ONE_WAY
    init = connection(vector, "init", True)
    resp = connection(vector, "resp", False)
    for index, message in enumerate(vector["messages"]):
        payload, expected = bytes.fromhex(message["payload"]), bytes.fromhex(message["ciphertext"])
        from_init = one_way or index % 2 == 0
        sender, receiver = (init, resp) if from_init else (resp, init)
        if not init.handshake_finished:
            written = bytes(sender.write_message(payload))
            got = bytes(receiver.read_message(written))
        else:
            written = sender.encrypt(payload)
            got = bytes(receiver.decrypt(written))
        if written != expected:
            raise AssertionError(f"{name}: message {index} ciphertext differs")
        if got != payload:
            raise AssertionError(f"{name}: message {index} payload differs")
    if "handshake_hash" in vector and init.get_handshake_hash().hex() != vector["handshake_hash"]:
        raise AssertionError(f"{name}: handshake hash differs")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--vectors", default=DEFAULT_VECTORS)
    parser.add_argument("--all", action="store_true", help="every vector noiseprotocol supports, not only IK")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # noiseprotocol warns about preset ephemerals, which vectors need
    with open(args.vectors) as f:
        vectors = json.load(f)["vectors"]
    selected = [v for v in vectors if SUPPORTED.match(v["protocol_name"])
                and (args.all or IK_ONLY.match(v["protocol_name"]))]
    failures = 0
    for vector in selected:
        try:
            run(vector)
        except Exception as error:
            failures += 1
            print(f"FAIL {vector['protocol_name']}: {error}", file=sys.stderr)
    print(f"noise_vector_check: {len(selected) - failures} of {len(selected)} vectors match")
    return 0 if selected and failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
