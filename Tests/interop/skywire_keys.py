"""Ed25519 identity -> X25519 Noise static keys, exactly as libsodium converts them
(docs/PROTOCOL.md section 1), written independently of libsodium:

* crypto_sign_ed25519_sk_to_curve25519: the first 32 bytes of SHA-512(seed), clamped.
* crypto_sign_ed25519_pk_to_curve25519: Montgomery u = (1 + y) / (1 - y) mod p, where y is the
  Edwards y coordinate; libsodium rejects encodings that are not canonical points on the curve
  or that have small order, so this does too.
"""

import hashlib

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

P = 2**255 - 19
D = (-121665 * pow(121666, P - 2, P)) % P
SEED_LEN = 32
KEY_LEN = 32


def ed25519_public_from_seed(seed: bytes) -> bytes:
    if len(seed) != SEED_LEN:
        raise ValueError(f"seed must be {SEED_LEN} bytes, got {len(seed)}")
    return Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()


def x25519_secret_from_seed(seed: bytes) -> bytes:
    if len(seed) != SEED_LEN:
        raise ValueError(f"seed must be {SEED_LEN} bytes, got {len(seed)}")
    h = bytearray(hashlib.sha512(seed).digest()[:KEY_LEN])
    h[0] &= 248
    h[31] &= 127
    h[31] |= 64
    return bytes(h)


def _edwards_x(y: int, sign: int):
    """Recovers x from y on -x^2 + y^2 = 1 + d x^2 y^2 (RFC 8032 section 5.1.3), or None."""
    u = (y * y - 1) % P
    v = (D * y * y + 1) % P
    x = (u * pow(v, 3, P) * pow(u * pow(v, 7, P), (P - 5) // 8, P)) % P
    if (v * x * x - u) % P != 0:
        x = (x * pow(2, (P - 1) // 4, P)) % P
        if (v * x * x - u) % P != 0:
            return None
    if x == 0 and sign == 1:
        return None
    if x & 1 != sign:
        x = P - x
    return x


def _edwards_add(a, b):
    (x1, y1), (x2, y2) = a, b
    t = D * x1 * x2 * y1 * y2 % P
    x3 = (x1 * y2 + x2 * y1) * pow(1 + t, P - 2, P) % P
    y3 = (y1 * y2 + x1 * x2) * pow(1 - t, P - 2, P) % P
    return (x3, y3)


def x25519_public_from_ed25519(pk: bytes) -> bytes:
    if len(pk) != KEY_LEN:
        raise ValueError(f"Ed25519 public key must be {KEY_LEN} bytes, got {len(pk)}")
    n = int.from_bytes(pk, "little")
    sign, y = n >> 255, n & ((1 << 255) - 1)
    if y >= P:
        raise ValueError("Ed25519 public key: non-canonical y")
    x = _edwards_x(y, sign)
    if x is None:
        raise ValueError("Ed25519 public key: not a point on the curve")
    point = (x, y)
    for _ in range(3):  # 8 * point == identity means small order
        point = _edwards_add(point, point)
    if point == (0, 1):
        raise ValueError("Ed25519 public key: small-order point")
    if (1 - y) % P == 0:
        raise ValueError("Ed25519 public key: y = 1 has no Montgomery form")
    u = (1 + y) * pow(1 - y, P - 2, P) % P
    return u.to_bytes(KEY_LEN, "little")


def x25519_public_from_secret(secret: bytes) -> bytes:
    return X25519PrivateKey.from_private_bytes(secret).public_key().public_bytes_raw()


def self_check(seed: bytes) -> None:
    """Both halves of the conversion must describe the same X25519 key pair."""
    ed_pk = ed25519_public_from_seed(seed)
    if x25519_public_from_ed25519(ed_pk) != x25519_public_from_secret(x25519_secret_from_seed(seed)):
        raise AssertionError("Ed25519->X25519 conversion: public and secret halves disagree")
