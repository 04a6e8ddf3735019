-- The seal configuration: one row, written by init.
CREATE TABLE seal_config (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    root_kind TEXT NOT NULL,
    share_set_id TEXT NOT NULL,
    shares INTEGER NOT NULL CHECK (shares BETWEEN 1 AND 255),
    threshold INTEGER NOT NULL CHECK (threshold BETWEEN 1 AND shares),
    created_at BIGINT NOT NULL
);

-- Keyring keys, each wrapped by the root of trust. The newest version wraps new key material.
CREATE TABLE keyring (
    version INTEGER PRIMARY KEY NOT NULL,
    mechanism TEXT NOT NULL,
    wrapped_key BLOB NOT NULL,
    created_at BIGINT NOT NULL
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
