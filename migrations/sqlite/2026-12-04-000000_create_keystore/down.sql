DROP TABLE tokens;
DROP TABLE key_versions;
DROP TABLE keys;
DROP TABLE keyring;
DROP TABLE seal_config;
