#!/usr/bin/env python3
"""Signs a grantline event with an independent DSSE implementation (PyNaCl, PAE by hand)
and posts it with urllib. Reads a PRIVATE+KEY file written by `grantline keygen`.

usage: sign_and_post.py SERVER KEYFILE TYPE DATA_JSON ID
Prints {"status": <http status>, "body": <json>} and exits 0 (the test judges the answer).
"""
import base64
import datetime
import hashlib
import json
import sys
import urllib.error
import urllib.request

import nacl.signing

PAYLOAD_TYPE = "application/vnd.grantline.event+json"


def read_private_key(path):
    text = open(path, encoding="utf-8").read().strip()
    prefix = "PRIVATE+KEY+"
    assert text.startswith(prefix), "not a PRIVATE+KEY file"
    # Names and ids have no "+"; the base64 key may.
    name, hex_id, b64 = text[len(prefix):].split("+", 2)
    raw = base64.b64decode(b64)
    assert raw[0] == 1 and len(raw) == 33, "not an Ed25519 key"
    key = nacl.signing.SigningKey(raw[1:])
    public = bytes(key.verify_key)
    # C2SP signed-note key id: SHA-256(name || 0x0A || 0x01 || public key)[:4].
    computed = hashlib.sha256(name.encode() + b"\n" + b"\x01" + public).digest()[:4].hex()
    assert computed == hex_id, f"key id mismatch {computed} != {hex_id}"
    return name, f"{name}+{hex_id}", key


def pae(payload_type, payload):
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def main():
    server, key_path, kind, data_json, statement_id = sys.argv[1:6]
    name, keyid, key = read_private_key(key_path)
    with urllib.request.urlopen(server + "/v1/log") as resp:
        origin = json.load(resp)["origin"]
    statement = {
        "ledger": origin,
        "id": statement_id,
        "actor": name,
        "issued_at": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "type": kind,
        "data": json.loads(data_json),
    }
    payload = json.dumps(statement, indent=2).encode()
    sig = key.sign(pae(PAYLOAD_TYPE, payload)).signature
    envelope = {
        "payload": base64.b64encode(payload).decode(),
        "payloadType": PAYLOAD_TYPE,
        "signatures": [{"sig": base64.b64encode(sig).decode(), "keyid": keyid}],
    }
    req = urllib.request.Request(
        server + "/v1/events",
        data=json.dumps(envelope).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req) as resp:
            status, body = resp.status, json.load(resp)
    except urllib.error.HTTPError as e:
        status, body = e.code, json.load(e)
    print(json.dumps({"status": status, "body": body}))


if __name__ == "__main__":
    main()
