//! Diesel table definitions, kept in step with `migrations/sqlite` by hand.

diesel::table! {
    seal_config (id) {
        id -> Integer,
        root_kind -> Text,
        share_set_id -> Text,
        shares -> Integer,
        threshold -> Integer,
        created_at -> BigInt,
        root_key_label -> Nullable<Text>,
        recovery_check -> Nullable<Binary>,
    }
}

diesel::table! {
    keyring (version) {
        version -> Integer,
        mechanism -> Text,
        wrapped_key -> Binary,
        created_at -> BigInt,
        key_label -> Nullable<Text>,
    }
}

diesel::table! {
    keys (id) {
        id -> Text,
        name -> Text,
        state -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    key_versions (key_id, version) {
        key_id -> Text,
        version -> Integer,
        keyring_version -> Integer,
        wrapped_material -> Binary,
        state -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    tokens (accessor) {
        accessor -> Text,
        token_hash -> Binary,
        is_root -> Bool,
        display_name -> Nullable<Text>,
        policy -> Text,
        created_at -> BigInt,
        expires_at -> Nullable<BigInt>,
        revoked_at -> Nullable<BigInt>,
    }
}

diesel::joinable!(key_versions -> keys (key_id));
diesel::allow_tables_to_appear_in_same_query!(seal_config, keyring, keys, key_versions, tokens);
