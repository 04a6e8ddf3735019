#!/usr/bin/env python3
"""Writes the field-encryption test vectors with an implementation independent of the SDK.

Follows docs/field-encryption.md and uses the `cryptography` package's HKDF, AESGCM and AESSIV
(pip install cryptography; version 48 was used). Each vector file contains `name: value` lines.
`expect` is `ok` or the error that decryption must report, as the SDK's error name in snake
case. `record_id` and `nonce` are `-` when absent. A negative vector may give `decrypt_data_key`,
`decrypt_field` or `decrypt_record_id` to decrypt with; the others default to the encryption
values. Run it from any folder; it rewrites every `*.txt` next to it.

    python3 generate.py          write the vectors
    python3 generate.py --show   also print one vector with its bytes labelled
"""
import base64
import struct
import sys
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

HERE = Path(__file__).parent

DATA_KEY = bytes(range(0x00, 0x20))
OTHER_DATA_KEY = bytes(range(0x20, 0x40))
NONCE = bytes(range(0xB0, 0xBC))
# A synthetic blob with the layout of a kmsd blob of a 32-byte data key (86 bytes): magic,
# version, algorithm, key id, key version, nonce, 32 bytes standing for the sealed key, tag.
WRAPPED_KEY = (
    b"KMSB"
    + bytes([1, 1])
    + bytes.fromhex("11111111222243338444555555555555")
    + struct.pack(">I", 1)
    + bytes(range(0xA0, 0xAC))
    + bytes(range(0x60, 0x80))
    + bytes(range(0xE0, 0xF0))
)
assert len(WRAPPED_KEY) == 86

PREFIX = {"randomized": "f1r.", "deterministic": "f1d."}


def hkdf(data_key, info, length):
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(data_key)


def subkeys(data_key):
    """Returns K_gcm, K_siv and the key reference of a data key."""
    return (
        hkdf(data_key, b"kms-field-v1 aes-256-gcm", 32),
        hkdf(data_key, b"kms-field-v1 aes-siv-cmac-512", 64),
        hkdf(data_key, b"kms-field-v1 key reference", 8),
    )


def header(form, key_ref, wrapped_key):
    if form == "compact":
        return b"\x01" + key_ref
    return b"\x02" + struct.pack(">H", len(wrapped_key)) + wrapped_key


def associated_data(prefix, head, field, record_id):
    field_bytes = field.encode()
    out = prefix.encode() + head + struct.pack(">I", len(field_bytes)) + field_bytes
    if record_id is None:
        return out + b"\x00"
    return out + b"\x01" + struct.pack(">I", len(record_id)) + record_id


def encrypt(data_key, mode, form, field, record_id, plaintext, nonce=NONCE, wrapped_key=WRAPPED_KEY):
    """Returns the payload and the text of a value."""
    k_gcm, k_siv, key_ref = subkeys(data_key)
    prefix = PREFIX[mode]
    head = header(form, key_ref, wrapped_key)
    aad = associated_data(prefix, head, field, record_id)
    if mode == "randomized":
        body = nonce + AESGCM(k_gcm).encrypt(nonce, plaintext, aad)
    else:
        body = AESSIV(k_siv).encrypt(plaintext, [aad])
    payload = head + body
    return payload, text_of(prefix, payload)


def text_of(prefix, payload):
    return prefix + base64.urlsafe_b64encode(payload).decode().rstrip("=")


def payload_of(text):
    body = text[4:]
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))


def flip(text, offset, mask=0x01):
    """Returns the text with one payload byte changed."""
    payload = bytearray(payload_of(text))
    payload[offset] ^= mask
    return text_of(text[:4], bytes(payload))


def write(name, expect, mode, form, field, record_id, plaintext, value, data_key=DATA_KEY,
          nonce=NONCE, wrapped_key=WRAPPED_KEY, **decrypt_with):
    lines = [
        f"expect: {expect}",
        f"mode: {mode}",
        f"form: {form}",
        f"data_key: {data_key.hex()}",
        f"wrapped_key: {wrapped_key.hex()}",
        f"field: {field}",
        f"record_id: {'-' if record_id is None else record_id.hex()}",
        f"nonce: {nonce.hex() if mode == 'randomized' else '-'}",
        f"plaintext: {plaintext.hex()}",
        f"key_ref: {subkeys(data_key)[2].hex()}",
        f"value: {value}",
    ]
    for name_, value_ in decrypt_with.items():
        if isinstance(value_, bytes):
            value_ = value_.hex()
        elif value_ is None:
            value_ = "-"
        lines.append(f"{name_}: {value_}")
    (HERE / f"{name}.txt").write_text("\n".join(lines) + "\n")


def ok(name, mode, form, field, record_id, plaintext):
    _, value = encrypt(DATA_KEY, mode, form, field, record_id, plaintext)
    write(name, "ok", mode, form, field, record_id, plaintext, value)
    return value


def main():
    for old in HERE.glob("*.txt"):
        old.unlink()

    rid = b"8d3e5a"
    for mode in ("randomized", "deterministic"):
        ok(f"ok_{mode}_compact_empty", mode, "compact", "patients.notes", None, b"")
        ok(f"ok_{mode}_compact_one_byte", mode, "compact", "patients.notes", None, b"\x00")
        ok(f"ok_{mode}_compact_64_bytes", mode, "compact", "patients.email", None,
           bytes(range(0x40, 0x80)))
        ok(f"ok_{mode}_compact_record_id", mode, "compact", "patients.notes", rid,
           b"allergic to penicillin")
        ok(f"ok_{mode}_compact_empty_record_id", mode, "compact", "patients.notes", b"",
           b"allergic to penicillin")
        ok(f"ok_{mode}_self_contained", mode, "self-contained", "patients.notes", rid,
           b"allergic to penicillin")
        ok(f"ok_{mode}_self_contained_empty", mode, "self-contained", "patients.notes", None, b"")
        ok(f"ok_{mode}_1000_bytes", mode, "compact", "/contact/phone", rid,
           bytes(i % 251 for i in range(1000)))
        ok(f"ok_{mode}_unicode_field", mode, "compact", "patients.prénom", None, "Zoë".encode())
    ok("ok_randomized_compact_doc_example", "randomized", "compact", "patients.notes", rid,
       b"allergic to penicillin")

    negatives(rid)
    if "--show" in sys.argv:
        show(rid)


def negatives(rid):
    plaintext = b"allergic to penicillin"
    field = "patients.notes"

    def base(mode, form="compact", record_id=rid):
        return encrypt(DATA_KEY, mode, form, field, record_id, plaintext)[1]

    def err(name, expect, mode, value, form="compact", record_id=rid, **decrypt_with):
        write(name, expect, mode, form, field, record_id, plaintext, value, **decrypt_with)

    for mode, letter in (("randomized", "r"), ("deterministic", "d")):
        value = base(mode)
        body_start = 9
        last = len(payload_of(value)) - 1
        err(f"err_{letter}_altered_key_ref", "wrong_key_reference", mode, flip(value, 1))
        err(f"err_{letter}_altered_first_body_byte", "authentication_failed", mode,
            flip(value, body_start))
        err(f"err_{letter}_altered_last_byte", "authentication_failed", mode,
            flip(value, last, 0x80))
        err(f"err_{letter}_wrong_field", "authentication_failed", mode, value,
            decrypt_field="patients.name")
        err(f"err_{letter}_wrong_record_id", "authentication_failed", mode, value,
            decrypt_record_id=b"8d3e5b")
        err(f"err_{letter}_record_id_missing", "authentication_failed", mode, value,
            decrypt_record_id=None)
        err(f"err_{letter}_empty_record_id_for_none", "authentication_failed", mode,
            base(mode, record_id=None), record_id=None, decrypt_record_id=b"")
        err(f"err_{letter}_wrong_data_key", "wrong_key_reference", mode, value,
            decrypt_data_key=OTHER_DATA_KEY)
        sc = base(mode, form="self-contained")
        err(f"err_{letter}_self_contained_wrong_data_key", "authentication_failed", mode, sc,
            form="self-contained", decrypt_data_key=OTHER_DATA_KEY)
        err(f"err_{letter}_altered_wrapped_key", "authentication_failed", mode,
            flip(sc, 3 + 40), form="self-contained")
        other = "d" if letter == "r" else "r"
        err(f"err_{letter}_mode_letter_swapped", "authentication_failed", mode,
            f"f1{other}." + value[4:])

    value = base("randomized")
    payload = payload_of(value)
    err("err_unknown_prefix", "unknown_prefix", "randomized", "f1x." + value[4:])
    err("err_plaintext_value", "unknown_prefix", "randomized", "allergic to penicillin")
    err("err_unsupported_version", "unsupported_version", "randomized", "f2r." + value[4:])
    padded = "f1r." + base64.urlsafe_b64encode(payload).decode()
    assert padded.endswith("="), "the payload length must not be a multiple of 3"
    err("err_base64_padding", "invalid_base64", "randomized", padded)
    err("err_base64_standard_alphabet", "invalid_base64", "randomized", value[:-1] + "+")
    # 2 payload bytes fill 3 characters with 2 bits to spare, and a set spare bit is not canonical.
    short = text_of("f1r.", payload[:2])
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last_char = alphabet[alphabet.index(short[-1]) | 0x01]
    err("err_base64_trailing_bits", "invalid_base64", "randomized", short[:-1] + last_char)
    err("err_truncated_compact", "truncated", "randomized", text_of("f1r.", payload[:36]))
    err("err_truncated_empty", "truncated", "randomized", "f1r.")
    err("err_unknown_form", "unknown_form", "randomized", text_of("f1r.", b"\x03" + payload[1:]))
    err("err_zero_wrapped_key_length", "invalid_wrapped_key_length", "randomized",
        text_of("f1r.", b"\x02\x00\x00" + payload[1:]), form="self-contained")
    sc = base("randomized", form="self-contained")
    err("err_truncated_self_contained", "truncated", "randomized",
        text_of("f1r.", payload_of(sc)[:3 + 86 + 27]), form="self-contained")


def show(rid):
    plaintext = b"allergic to penicillin"
    payload, value = encrypt(DATA_KEY, "randomized", "compact", "patients.notes", rid, plaintext)
    print("data_key:  ", DATA_KEY.hex())
    print("key_ref:   ", payload[1:9].hex())
    print("field:      patients.notes")
    print("record_id: ", rid.hex(), f"({rid.decode()})")
    print("plaintext: ", plaintext.hex(), f"({plaintext.decode()})")
    print("payload:   ", payload[:1].hex(), "(form)", payload[1:9].hex(), "(key reference)")
    print("           ", payload[9:21].hex(), "(nonce)")
    print("           ", payload[21:-16].hex(), "(ciphertext)")
    print("           ", payload[-16:].hex(), "(tag)")
    print("value:     ", value)


if __name__ == "__main__":
    main()
