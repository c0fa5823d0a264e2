#!/usr/bin/env python3
"""Checks a witness's C2SP tlog-cosignature v1 line with an implementation grantline did not
write: Python's `cryptography` (Ed25519), following the spec's formulas by hand.

    check_cosignature.py VKEY BODY_FILE LINE_FILE

VKEY is the witness's verifier key, `<name>+<hex id>+<base64(0x04 || public key)>`; BODY_FILE
holds the checkpoint body (the signed text, final newline included); LINE_FILE holds the
witness's answer, one signature line. Prints the cosignature's time and exits 0 when it
verifies; otherwise says why on stderr and exits 1.
"""

import base64
import hashlib
import struct
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

ALG_COSIGNATURE_V1 = b"\x04"


def fail(reason):
    print(f"check_cosignature: {reason}", file=sys.stderr)
    sys.exit(1)


def main():
    if len(sys.argv) != 4:
        fail("usage: check_cosignature.py VKEY BODY_FILE LINE_FILE")
    vkey, body_path, line_path = sys.argv[1:]
    name, id_hex, key_b64 = vkey.strip().split("+", 2)
    raw_key = base64.b64decode(key_b64, validate=True)
    if len(raw_key) != 33 or raw_key[:1] != ALG_COSIGNATURE_V1:
        fail("the verifier key is not 0x04 followed by a 32-byte Ed25519 key")
    public = raw_key[1:]
    # key id = SHA-256(name || "\n" || 0x04 || public key)[:4]
    key_id = hashlib.sha256(name.encode() + b"\n" + ALG_COSIGNATURE_V1 + public).digest()[:4]
    if key_id.hex() != id_hex:
        fail(f"the verifier key says id {id_hex}, but its name and key hash to {key_id.hex()}")

    with open(body_path, "rb") as f:
        body = f.read()
    with open(line_path, "rb") as f:
        answer = f.read().decode("utf-8")
    if not answer.endswith("\n") or answer.count("\n") != 1:
        fail(f"the answer is not exactly one line ending in a newline: {answer!r}")
    line = answer[:-1]
    prefix = "\u2014 "
    if not line.startswith(prefix):
        fail(f"the line does not start with an em dash and a space: {line!r}")
    line_name, sig_b64 = line[len(prefix):].split(" ")
    if line_name != name:
        fail(f"the line is signed by {line_name!r}, not {name!r}")
    raw = base64.b64decode(sig_b64, validate=True)
    if len(raw) != 4 + 8 + 64:
        fail(f"the signature is {len(raw)} bytes, not 76 (key id, time, Ed25519 signature)")
    if raw[:4] != key_id:
        fail(f"the line's key id is {raw[:4].hex()}, not {key_id.hex()}")
    (time,) = struct.unpack(">Q", raw[4:12])
    if time >= 1 << 63:
        fail(f"the time {time} is out of range")
    # signature = Ed25519 over "cosignature/v1\ntime <t>\n" || checkpoint body
    message = b"cosignature/v1\ntime %d\n" % time + body
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(raw[12:], message)
    except InvalidSignature:
        fail("the Ed25519 signature does not verify over the cosigned message")
    print(time)


if __name__ == "__main__":
    main()
