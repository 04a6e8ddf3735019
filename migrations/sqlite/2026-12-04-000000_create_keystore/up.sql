-- The seal configuration: one row, written by init. The shares unseal a Shamir root; with a
-- PKCS#11 root they are recovery shares, checked against recovery_check, and root_key_label
-- names the token's key object that wraps new keyring versions.
CREATE TABLE seal_config (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    root_kind TEXT NOT NULL CHECK (root_kind IN ('shamir', 'pkcs11')),
    share_set_id TEXT NOT NULL,
    shares INTEGER NOT NULL CHECK (shares BETWEEN 1 AND 255),
    threshold INTEGER NOT NULL CHECK (threshold BETWEEN 1 AND shares),
    created_at BIGINT NOT NULL,
    root_key_label TEXT,
    recovery_check BLOB,
    CHECK ((root_kind = 'pkcs11') = (root_key_label IS NOT NULL AND recovery_check IS NOT NULL))
);

-- Keyring keys, each wrapped by the root of trust. The newest version wraps new key material.
-- key_label names the PKCS#11 key object that wrapped the row, and is NULL under a Shamir root.
CREATE TABLE keyring (
    version INTEGER PRIMARY KEY NOT NULL,
    mechanism TEXT NOT NULL,
    wrapped_key BLOB NOT NULL,
    created_at BIGINT NOT NULL,
    key_label TEXT
);

-- Named key-encryption keys.
CREATE TABLE keys (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL CHECK (state IN ('enabled', 'disabled')),
    created_at BIGINT NOT NULL
);

-- Versions of each key: random key material wrapped by a keyring version.
CREATE TABLE key_versions (
    key_id TEXT NOT NULL REFERENCES keys (id),
    version INTEGER NOT NULL CHECK (version >= 1),
    keyring_version INTEGER NOT NULL REFERENCES keyring (version),
    wrapped_material BLOB NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('enabled', 'disabled')),
    created_at BIGINT NOT NULL,
    PRIMARY KEY (key_id, version)
);

-- Access tokens, stored only as SHA-256 hashes.
CREATE TABLE tokens (
    accessor TEXT PRIMARY KEY NOT NULL,
    token_hash BLOB NOT NULL UNIQUE,
    is_root BOOLEAN NOT NULL,
    display_name TEXT,
    policy TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT
);
