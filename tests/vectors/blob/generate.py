#!/usr/bin/env python3
"""Writes the ciphertext-blob test vectors with an implementation independent of kmsd.

Uses the `cryptography` package's AES-GCM. Each vector file holds `name: value` lines; the
`expect` line is `ok` or the API error code that opening the blob must produce.
"""
import json
import struct
import uuid
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

HERE = Path(__file__).parent


def encode_context(context):
    out = struct.pack(">I", len(context))
    for key in sorted(context, key=lambda k: k.encode()):
        k, v = key.encode(), context[key].encode()
        out += struct.pack(">I", len(k)) + k + struct.pack(">I", len(v)) + v
    return out


def seal(material, key_id, version, nonce, plaintext, context):
    header = b"KMSB" + bytes([1, 1]) + key_id.bytes + struct.pack(">I", version) + nonce
    aad = header + encode_context(context)
    return header + AESGCM(material).encrypt(nonce, plaintext, aad)


def write(name, expect, material, key_id, version, context, plaintext, blob):
    lines = [
        f"expect: {expect}",
        f"key_material: {material.hex()}",
        f"key_id: {key_id}",
        f"key_version: {version}",
        f"context: {json.dumps(context, sort_keys=True)}",
        f"plaintext: {plaintext.hex()}",
        f"blob: {blob.hex()}",
    ]
    (HERE / f"{name}.txt").write_text("\n".join(lines) + "\n")


def main():
    material = bytes(range(32))
    key_id = uuid.UUID("11111111-2222-4333-8444-555555555555")
    nonce = bytes(range(0xA0, 0xAC))

    data_key = bytes(range(0x40, 0x60))
    blob = seal(material, key_id, 1, nonce, data_key, {})
    write("ok_data_key_empty_context", "ok", material, key_id, 1, {}, data_key, blob)

    context = {"tenant": "clinic-7", "app": "billing"}
    data_key16 = bytes(range(0x70, 0x80))
    blob = seal(material, key_id, 3, nonce, data_key16, context)
    write("ok_data_key_with_context", "ok", material, key_id, 3, context, data_key16, blob)

    payload = b"synthetic record 0001"
    payload_blob = seal(material, key_id, 2, nonce, payload, {"field": "notes"})
    write("ok_payload", "ok", material, key_id, 2, {"field": "notes"}, payload, payload_blob)

    wrong = {"tenant": "clinic-8", "app": "billing"}
    write("err_wrong_context", "decryption_failed", material, key_id, 3, wrong, data_key16, blob)
    write("err_missing_context", "decryption_failed", material, key_id, 3, {}, data_key16, blob)

    tampered = bytearray(blob)
    tampered[-1] ^= 0x01
    write("err_tampered_tag", "decryption_failed", material, key_id, 3, context, data_key16,
          bytes(tampered))

    tampered = bytearray(blob)
    tampered[30] ^= 0x80
    write("err_tampered_nonce", "decryption_failed", material, key_id, 3, context, data_key16,
          bytes(tampered))

    tampered = bytearray(blob)
    tampered[40] ^= 0x01
    write("err_tampered_ciphertext", "decryption_failed", material, key_id, 3, context,
          data_key16, bytes(tampered))

    tampered = bytearray(blob)
    tampered[0:4] = b"KMSX"
    write("err_bad_magic", "invalid_ciphertext", material, key_id, 3, context, data_key16,
          bytes(tampered))

    tampered = bytearray(blob)
    tampered[4] = 2
    write("err_unknown_format_version", "invalid_ciphertext", material, key_id, 3, context,
          data_key16, bytes(tampered))

    write("err_truncated", "invalid_ciphertext", material, key_id, 3, context, data_key16,
          blob[:53])

    tampered = bytearray(blob)
    tampered[25] = 9
    write("err_unknown_key_version", "key_version_not_found", material, key_id, 3, context,
          data_key16, bytes(tampered))


if __name__ == "__main__":
    main()
