#!/usr/bin/env python3
"""Writes the file-format test vectors with an implementation independent of the SDK.

Uses the `cryptography` package's HKDF, HMAC, AES-GCM, X25519 and ChaCha20-Poly1305; the age
recovery slots and their Bech32 keys are built here from the age v1 specification
(https://age-encryption.org/v1), with fixed ephemeral keys so that the output is reproducible.

Each vector file contains `name: value` lines:

- `expect` is `ok` or the error that reading the file must produce, as the error name in snake
  case followed by its number where it has one (`segment_auth_failed 1`).
- `reproduce: yes` means that the SDK's writer, given the same key, salt, nonce prefix,
  context, slots, segment size, slot area length and plaintext, must write `file` byte for byte.
- `slots` lists the slots of the copy in use as `type:hex-of-body` pairs, or `-` for none;
  `slot_generation` is that copy's generation.
- `recovery_identity`, when present, opens the recovery slot.
- `rewrap_of`, when present, names the vector whose file, rewrapped with `slots`, gives `file`.

Run it with `python3 generate.py`; it replaces every `*.txt` file in this folder.
"""
import hashlib
import hmac
import json
import struct
from base64 import b64encode
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

HERE = Path(__file__).parent
SEGMENT = 4096
AREA = 1024
TAG = 16
COPY_HEAD = 44


def u32(value):
    return struct.pack(">I", value)


def hkdf(ikm, salt, info):
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(ikm)


# --- Bech32 (BIP 173), as age uses it for its keys ------------------------------------------

BECH32_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def bech32_polymod(values):
    generators = [0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3]
    checksum = 1
    for value in values:
        top = checksum >> 25
        checksum = (checksum & 0x1FFFFFF) << 5 ^ value
        for i, generator in enumerate(generators):
            if (top >> i) & 1:
                checksum ^= generator
    return checksum


def bech32_encode(hrp, data):
    groups, accumulator, bits = [], 0, 0
    for byte in data:
        accumulator = (accumulator << 8) | byte
        bits += 8
        while bits >= 5:
            bits -= 5
            groups.append((accumulator >> bits) & 31)
    if bits:
        groups.append((accumulator << (5 - bits)) & 31)
    expanded = [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]
    polymod = bech32_polymod(expanded + groups + [0] * 6) ^ 1
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(BECH32_CHARSET[g] for g in groups + checksum)


# --- age v1 with one X25519 recipient -----------------------------------------------------

def b64(data):
    return b64encode(data).decode().rstrip("=")


def raw_public(private):
    return private.public_key().public_bytes(serialization.Encoding.Raw,
                                             serialization.PublicFormat.Raw)


class AgeKey:
    """An X25519 recovery key pair from fixed secret bytes."""

    def __init__(self, secret):
        self.private = X25519PrivateKey.from_private_bytes(secret)
        self.public = raw_public(self.private)
        self.recipient = bech32_encode("age", self.public)
        self.identity = bech32_encode("age-secret-key-", secret).upper()


def age_encrypt(recipient_public, plaintext, ephemeral_secret, age_file_key, payload_nonce):
    """Encrypts `plaintext` (at most 64 KiB) as a binary age file to one X25519 recipient."""
    ephemeral = X25519PrivateKey.from_private_bytes(ephemeral_secret)
    share = raw_public(ephemeral)
    shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(recipient_public))
    wrap_key = hkdf(shared, share + recipient_public, b"age-encryption.org/v1/X25519")
    wrapped = ChaCha20Poly1305(wrap_key).encrypt(bytes(12), age_file_key, None)
    header = f"age-encryption.org/v1\n-> X25519 {b64(share)}\n{b64(wrapped)}\n---".encode()
    mac = hmac.new(hkdf(age_file_key, b"", b"header"), header, hashlib.sha256).digest()
    payload_key = hkdf(age_file_key, payload_nonce, b"payload")
    assert len(plaintext) <= 64 * 1024
    chunk = ChaCha20Poly1305(payload_key).encrypt(bytes(11) + b"\x01", plaintext, None)
    return header + b" " + b64(mac).encode() + b"\n" + payload_nonce + chunk


# --- The KMS file format -------------------------------------------------------------------

def encode_context(context):
    out = u32(len(context))
    for key in sorted(context, key=lambda k: k.encode()):
        k, v = key.encode(), context[key].encode()
        out += u32(len(k)) + k + u32(len(v)) + v
    return out


def kms_slot(key_id, version, blob):
    return (1, bytes([len(key_id)]) + key_id.encode() + u32(version) + blob)


def recovery_slot(recipient, age_file):
    return (2, bytes([len(recipient)]) + recipient.encode() + age_file)


def slot_list(slots):
    return b"".join(bytes([t]) + u32(len(body)) + body for t, body in slots)


def slot_copy(generation, slots, area, raw_list=None):
    listed = slot_list(slots) if raw_list is None else raw_list
    covered = struct.pack(">Q", generation) + u32(len(listed)) + listed
    copy = hashlib.sha256(covered).digest() + covered
    assert len(copy) <= area
    return copy + bytes(area - len(copy))


class File:
    """An encrypted file kept as its header and its list of sealed segments."""

    def __init__(self, v, plaintext, slots=None, copies=None, last_flags=None):
        slots = v.slots if slots is None else slots
        context = encode_context(v.context)
        header_len = 57 + len(context) + 32 + 2 * v.area
        self.authenticated = (b"KMSF" + bytes([1, 1]) + u32(header_len) + u32(v.segment_size)
                              + u32(v.area) + v.salt + v.prefix + context)
        digest = hashlib.sha256(self.authenticated).digest()
        segment_key = hkdf(v.file_key, v.salt, b"kms-file-v1 segment" + digest)
        commit_key = hkdf(v.file_key, v.salt, b"kms-file-v1 commit" + digest)
        self.commitment = hmac.new(commit_key, self.authenticated, hashlib.sha256).digest()
        copies = copies or [slot_copy(1, slots, v.area), bytes(v.area)]
        self.header = self.authenticated + self.commitment + copies[0] + copies[1]
        assert len(self.header) == header_len

        size = v.segment_size
        pieces = [plaintext[i:i + size] for i in range(0, len(plaintext), size)] or [b""]
        flags = last_flags or [0] * (len(pieces) - 1) + [1]
        aead = AESGCM(segment_key)
        self.segments = []
        for index, (piece, last) in enumerate(zip(pieces, flags)):
            nonce = v.prefix + u32(index) + bytes([last])
            self.segments.append(aead.encrypt(nonce, piece, None))

    def bytes(self):
        return self.header + b"".join(self.segments)


RECOVERY = AgeKey(bytes(range(0xC0, 0xE0)))


class Vector:
    """The inputs shared by most vectors. Each vector changes the inputs it tests."""

    def __init__(self):
        self.file_key = bytes(range(0x40, 0x60))
        self.salt = bytes(range(0x80, 0xA0))
        self.prefix = bytes(range(0xB0, 0xB7))
        self.context = {"tenant": "clinic-7", "app": "backup"}
        self.segment_size = SEGMENT
        self.area = AREA
        self.kms = kms_slot("3f1e2d4c-5b6a-4789-8abc-def012345678", 3,
                            b"KMSB\x01\x01" + bytes(range(0x10, 0x60)))
        age_file = age_encrypt(RECOVERY.public, self.file_key, bytes(range(0xE0, 0x100)),
                               bytes(range(0x00, 0x10)), bytes(range(0x30, 0x40)))
        self.recovery = recovery_slot(RECOVERY.recipient, age_file)
        self.slots = [self.kms, self.recovery]


def pattern(length):
    """Plaintext of the vectors: byte i is (31 * i + 7) mod 256."""
    return bytes((31 * i + 7) % 256 for i in range(length))


def write(name, expect, data, v, plaintext=b"", reproduce=False, decrypt_key=None,
          decrypt_context=None, slots=None, generation=1, extra=()):
    slots = v.slots if slots is None else slots
    slot_text = " ".join(f"{t}:{body.hex()}" for t, body in slots) or "-"
    decrypt_context = v.context if decrypt_context is None else decrypt_context
    lines = [
        f"expect: {expect}",
        f"reproduce: {'yes' if reproduce else 'no'}",
        f"file_key: {v.file_key.hex()}",
        f"decrypt_key: {(decrypt_key or v.file_key).hex()}",
        f"context: {json.dumps(v.context, sort_keys=True)}",
        f"decrypt_context: {json.dumps(decrypt_context, sort_keys=True)}",
        f"segment_size: {v.segment_size}",
        f"slot_area_len: {v.area}",
        f"salt: {v.salt.hex()}",
        f"nonce_prefix: {v.prefix.hex()}",
        f"slots: {slot_text}",
        f"slot_generation: {generation}",
        *extra,
        f"plaintext: {plaintext.hex()}",
        f"file: {data.hex()}",
    ]
    (HERE / f"{name}.txt").write_text("\n".join(lines) + "\n")


def ok_vectors(v):
    identity = [f"recovery_identity: {RECOVERY.identity}"]
    sizes = {
        "ok_empty": 0,
        "ok_one_byte": 1,
        "ok_segment_minus_one": SEGMENT - 1,
        "ok_one_segment": SEGMENT,
        "ok_segment_plus_one": SEGMENT + 1,
        "ok_three_segments_plus_7": 3 * SEGMENT + 7,
    }
    for name, size in sizes.items():
        plaintext = pattern(size)
        write(name, "ok", File(v, plaintext).bytes(), v, plaintext, reproduce=True,
              extra=identity)

    plaintext = pattern(100)
    empty = Vector()
    empty.context = {}
    write("ok_empty_context_no_slots", "ok", File(empty, plaintext, slots=[]).bytes(), empty,
          plaintext, reproduce=True, slots=[])

    default = Vector()
    default.segment_size, default.area = 65536, 2048
    plaintext = pattern(1000)
    write("ok_default_segment_size", "ok", File(default, plaintext).bytes(), default, plaintext,
          reproduce=True, extra=identity)

    doc = Vector()
    doc.context = {"tenant": "clinic-7"}
    doc.area = 192
    doc_slots = [doc.kms]
    plaintext = b"synthetic record 0001"
    write("ok_doc_example", "ok", File(doc, plaintext, slots=doc_slots).bytes(), doc,
          plaintext, reproduce=True, slots=doc_slots)

    plaintext = pattern(100)
    unknown = [v.kms, (9, b"slot type of a later version"), v.recovery]
    write("ok_unknown_slot_type_kept", "ok", File(v, plaintext, slots=unknown).bytes(), v,
          plaintext, reproduce=True, slots=unknown, extra=identity)


def copy_vectors(v):
    """Slot copies as a rewrap leaves them, finished or cut short by a crash."""
    plaintext = pattern(SEGMENT + 1)
    rotated = kms_slot("3f1e2d4c-5b6a-4789-8abc-def012345678", 4,
                       b"KMSB\x01\x01" + bytes(range(0x20, 0x70)))
    old = slot_copy(1, v.slots, v.area)
    new = slot_copy(2, [rotated, v.recovery], v.area)

    def with_copies(name, first, second, slots, generation):
        data = File(v, plaintext, copies=[first, second]).bytes()
        write(name, "ok", data, v, plaintext, slots=slots, generation=generation)

    write("ok_rewrapped", "ok", File(v, plaintext, copies=[bytes(v.area), new]).bytes(), v,
          plaintext, slots=[rotated, v.recovery], generation=2,
          extra=["rewrap_of: ok_segment_plus_one"])
    with_copies("ok_new_copy_before_erase", old, new, [rotated, v.recovery], 2)
    # A byte inside the checksummed part, as a write cut short would leave it.
    torn = bytearray(new)
    torn[100] ^= 0xFF
    with_copies("ok_new_copy_torn", old, bytes(torn), v.slots, 1)
    half_erased = bytes(v.area // 2) + old[v.area // 2:]
    with_copies("ok_old_copy_half_erased", half_erased, new, [rotated, v.recovery], 2)
    third = slot_copy(3, v.slots, v.area)
    with_copies("ok_first_copy_newer", third, new, v.slots, 3)

    data = File(v, plaintext, copies=[bytes(torn), bytes(v.area)]).bytes()
    write("err_both_slot_copies_damaged", "slot_copies_damaged", data, v)
    bad_list = slot_copy(1, [], v.area, raw_list=bytes([1]) + u32(500) + b"short")
    data = File(v, plaintext, copies=[bad_list, bytes(v.area)]).bytes()
    write("err_slot_longer_than_list", "malformed_header", data, v)


def header_vectors(v):
    # Reading fails in the header, so one short segment is enough.
    good = File(v, pattern(100)).bytes()
    context_end = 57 + len(encode_context(v.context))

    def tampered(name, expect, offset, new_bytes, **kwargs):
        data = bytearray(good)
        data[offset:offset + len(new_bytes)] = new_bytes
        write(name, expect, bytes(data), v, **kwargs)

    write("err_wrong_key", "commitment_mismatch", good, v, decrypt_key=bytes(range(0x41, 0x61)))
    write("err_wrong_context", "context_mismatch", good, v,
          decrypt_context={"tenant": "clinic-8", "app": "backup"})
    write("err_missing_context", "context_mismatch", good, v, decrypt_context={})
    tampered("err_bad_magic", "bad_magic", 3, b"X")
    tampered("err_unsupported_version", "unsupported_version 2", 4, b"\x02")
    tampered("err_unsupported_algorithm", "unsupported_algorithm 7", 5, b"\x07")
    tampered("err_header_length_above_limit", "header_too_large", 6, u32(0x200000))
    tampered("err_header_length_below_minimum", "malformed_header", 6, u32(100))
    header_len = struct.unpack(">I", good[6:10])[0]
    tampered("err_header_length_altered", "malformed_header", 6, u32(header_len + 1))
    tampered("err_segment_size_too_small", "invalid_segment_size 1024", 10, u32(1024))
    tampered("err_altered_segment_size", "commitment_mismatch", 10, u32(8192))
    tampered("err_slot_area_below_minimum", "malformed_header", 14, u32(16))
    # A slot area one byte longer, with the header length to match. It parses, but both
    # lengths are authenticated.
    longer = bytearray(good)
    longer[6:10] = u32(header_len + 2)
    longer[14:18] = u32(v.area + 1)
    write("err_altered_slot_area_len", "commitment_mismatch", bytes(longer), v)
    tampered("err_altered_salt", "commitment_mismatch", 18, bytes([good[18] ^ 0x01]))
    tampered("err_altered_nonce_prefix", "commitment_mismatch", 52, bytes([good[52] ^ 0x80]))
    tampered("err_altered_commitment", "commitment_mismatch", context_end + 31,
             bytes([good[context_end + 31] ^ 0x01]))

    # The stored context is changed to clinic-6. The reader passes clinic-7, then clinic-6.
    value_offset = good.index(b"clinic-7") + 7
    tampered("err_altered_stored_context", "context_mismatch", value_offset, b"6")
    tampered("err_altered_stored_context_passed_back", "commitment_mismatch", value_offset,
             b"6", decrypt_context={"tenant": "clinic-6", "app": "backup"})

    unsorted = Vector()
    unsorted.context = {}
    base = File(unsorted, b"", slots=[]).bytes()
    swapped = (u32(2) + u32(6) + b"tenant" + u32(1) + b"a" + u32(3) + b"app" + u32(1) + b"b")
    header_len = len(base) - TAG + len(swapped) - 4
    data = (b"KMSF" + bytes([1, 1]) + u32(header_len) + base[10:57] + swapped
            + base[61:len(base) - TAG])
    write("err_context_not_sorted", "malformed_header", data, v)

    write("err_truncated_header", "truncated_header", good[:60], v)
    write("err_no_segments", "truncated 0", good[:len(File(v, b"").header)], v)


def segment_vectors(v):
    plaintext = pattern(2 * SEGMENT + 100)
    f = File(v, plaintext)
    head, segs = f.header, f.segments

    write("err_truncated_at_segment_boundary", "truncated 2", head + segs[0] + segs[1], v)
    write("err_truncated_after_first_segment", "truncated 1", head + segs[0], v)
    write("err_truncated_inside_segment", "segment_auth_failed 1",
          head + segs[0] + segs[1][:2000], v)
    write("err_truncated_ten_bytes_into_segment", "truncated 2",
          head + segs[0] + segs[1] + segs[2][:10], v)
    write("err_truncated_inside_last_segment", "segment_auth_failed 2",
          head + segs[0] + segs[1] + segs[2][:-1], v)

    flipped = bytearray(segs[1])
    flipped[100] ^= 0x01
    write("err_altered_segment", "segment_auth_failed 1",
          head + segs[0] + bytes(flipped) + segs[2], v)
    flipped = bytearray(segs[2])
    flipped[-1] ^= 0x01
    write("err_altered_last_tag", "segment_auth_failed 2",
          head + segs[0] + segs[1] + bytes(flipped), v)
    write("err_reordered_segments", "segment_auth_failed 0", head + segs[1] + segs[0] + segs[2], v)
    write("err_duplicated_segment", "segment_auth_failed 1",
          head + segs[0] + segs[0] + segs[1] + segs[2], v)

    other = Vector()
    other.salt = bytes(range(0x81, 0xA1))
    spliced = File(other, plaintext).segments[1]
    write("err_segment_from_other_file", "segment_auth_failed 1",
          head + segs[0] + spliced + segs[2], v)

    write("err_trailing_data_after_short_last", "segment_auth_failed 2",
          head + b"".join(segs) + b"extra", v)

    full = File(v, pattern(2 * SEGMENT))
    write("err_trailing_data_after_full_last", "trailing_data 1", full.bytes() + b"extra", v)
    write("err_duplicated_full_last_segment", "trailing_data 1",
          full.bytes() + full.segments[1], v)

    two_last = File(v, pattern(2 * SEGMENT), last_flags=[1, 1])
    write("err_extra_last_segment", "trailing_data 0", two_last.bytes(), v)
    no_last = File(v, plaintext, last_flags=[0, 0, 0])
    write("err_short_last_segment_not_flagged", "segment_auth_failed 2", no_last.bytes(), v)
    no_last = File(v, pattern(2 * SEGMENT), last_flags=[0, 0])
    write("err_full_last_segment_not_flagged", "truncated 2", no_last.bytes(), v)


def main():
    for old in HERE.glob("*.txt"):
        old.unlink()
    v = Vector()
    ok_vectors(v)
    copy_vectors(v)
    header_vectors(v)
    segment_vectors(v)


if __name__ == "__main__":
    main()
