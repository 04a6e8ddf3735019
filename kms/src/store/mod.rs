//! The key store: seal configuration, wrapped keys and token hashes in SQLite through diesel.
//!
//! Every change of key state is one transaction, so a crash leaves either the old state or the
//! new one. Calls block; async callers run them on the blocking pool.

pub mod models;
pub mod schema;

use std::path::Path;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool, PooledConnection};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::sqlite::SqliteConnection;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::error::Error;
use models::{KeyRow, KeyVersionRow, KeyringRow, SealConfigRow, TokenRow};
use schema::{key_versions, keyring, keys, seal_config, tokens};

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/sqlite");

/// Connections in the pool. SQLite serialises writers, so a few suffice for the reads that
/// token lookups and admin calls make.
const POOL_SIZE: u32 = 8;

// TODO: add the PostgreSQL backend for deployments with more than one kmsd node.
type Conn = PooledConnection<ConnectionManager<SqliteConnection>>;

/// The columns of the seal configuration that name the root of trust.
#[derive(Debug, Clone)]
pub struct RootColumns {
    /// Kind of root.
    pub kind: hsm::RootKind,
    /// PKCS#11 key object that wraps new keyring versions; `None` for Shamir.
    pub key_label: Option<String>,
    /// Recovery check of a PKCS#11 root; `None` for Shamir.
    pub recovery_check: Option<Vec<u8>>,
}

/// A pool of connections to the key store.
#[derive(Clone)]
pub struct Store {
    pool: Pool<ConnectionManager<SqliteConnection>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("backend", &"sqlite").finish()
    }
}

#[derive(Debug)]
struct SqlitePragmas;

impl CustomizeConnection<SqliteConnection, diesel::r2d2::Error> for SqlitePragmas {
    fn on_acquire(&self, conn: &mut SqliteConnection) -> Result<(), diesel::r2d2::Error> {
        // The busy timeout comes first so the other statements wait for a concurrent writer.
        // FULL sync makes each commit durable; journal_mode is persistent and set at open.
        conn.batch_execute(
            "PRAGMA busy_timeout = 5000; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
        )
        .map_err(diesel::r2d2::Error::QueryError)
    }
}

impl Store {
    /// Opens (creating if needed) the SQLite database at `path` and runs pending migrations.
    pub fn open_sqlite(path: &Path) -> Result<Store, Error> {
        let url = path.to_str().ok_or_else(|| Error::Config {
            setting: "database_path",
            reason: format!("{} is not valid UTF-8", path.display()),
        })?;
        let manager = ConnectionManager::<SqliteConnection>::new(url);
        let pool = Pool::builder()
            .max_size(POOL_SIZE)
            .min_idle(Some(1))
            .connection_timeout(Duration::from_secs(10))
            .connection_customizer(Box::new(SqlitePragmas))
            .build(manager)?;
        let store = Store { pool };
        store.migrate()?;
        Ok(store)
    }

    fn migrate(&self) -> Result<(), Error> {
        let mut conn = self.conn()?;
        // WAL lets readers proceed during a write; the setting is stored in the file.
        conn.batch_execute("PRAGMA journal_mode = WAL;")?;
        conn.run_pending_migrations(SQLITE_MIGRATIONS)
            .map_err(|source| Error::Migration(source.to_string()))?;
        Ok(())
    }

    fn conn(&self) -> Result<Conn, Error> {
        Ok(self.pool.get()?)
    }

    /// Returns the seal configuration, or `None` before init.
    pub fn seal_config(&self) -> Result<Option<SealConfigRow>, Error> {
        let mut conn = self.conn()?;
        Ok(seal_config::table
            .select(SealConfigRow::as_select())
            .first(&mut conn)
            .optional()?)
    }

    /// Writes the seal configuration, the first keyring version and the root token in one
    /// transaction. Fails with [`Error::AlreadyInitialized`] when a configuration exists.
    pub fn initialize(
        &self,
        config: &SealConfigRow,
        keyring_row: &KeyringRow,
        root_token: &TokenRow,
    ) -> Result<(), Error> {
        let mut conn = self.conn()?;
        conn.immediate_transaction(|conn| {
            let existing: i64 = seal_config::table.count().get_result(conn)?;
            if existing > 0 {
                return Err(Error::AlreadyInitialized);
            }
            diesel::insert_into(seal_config::table)
                .values(config)
                .execute(conn)?;
            diesel::insert_into(keyring::table)
                .values(keyring_row)
                .execute(conn)?;
            diesel::insert_into(tokens::table)
                .values(root_token)
                .execute(conn)?;
            Ok(())
        })
    }

    /// Replaces the root of trust in the seal configuration and the wrapping of every keyring
    /// row in one transaction. The keyring keys inside stay the same. `rows` must name exactly
    /// the stored keyring versions.
    pub fn replace_root(&self, root: &RootColumns, rows: &[KeyringRow]) -> Result<(), Error> {
        let mut conn = self.conn()?;
        conn.immediate_transaction(|conn| {
            let stored: i64 = keyring::table.count().get_result(conn)?;
            if usize::try_from(stored).ok() != Some(rows.len()) {
                return Err(Error::Conflict(
                    "the keyring changed while the root of trust was being replaced",
                ));
            }
            diesel::update(seal_config::table.find(1))
                .set((
                    seal_config::root_kind.eq(root.kind.as_str()),
                    seal_config::root_key_label.eq(&root.key_label),
                    seal_config::recovery_check.eq(&root.recovery_check),
                ))
                .execute(conn)?;
            for row in rows {
                let updated = diesel::update(keyring::table.find(row.version))
                    .set((
                        keyring::mechanism.eq(&row.mechanism),
                        keyring::wrapped_key.eq(&row.wrapped_key),
                        keyring::key_label.eq(&row.key_label),
                    ))
                    .execute(conn)?;
                if updated != 1 {
                    return Err(Error::Conflict(
                        "the keyring changed while the root of trust was being replaced",
                    ));
                }
            }
            Ok(())
        })
    }

    /// Returns whether any keyring row is wrapped by the PKCS#11 key object `label`.
    pub fn root_key_label_in_use(&self, label: &str) -> Result<bool, Error> {
        let mut conn = self.conn()?;
        let count: i64 = keyring::table
            .filter(keyring::key_label.eq(label))
            .count()
            .get_result(&mut conn)?;
        Ok(count > 0)
    }

    /// Returns every keyring version, oldest first.
    pub fn keyring_versions(&self) -> Result<Vec<KeyringRow>, Error> {
        let mut conn = self.conn()?;
        Ok(keyring::table
            .order(keyring::version.asc())
            .select(KeyringRow::as_select())
            .load(&mut conn)?)
    }

    /// Returns every key with its versions, ordered by name and version.
    pub fn load_keys(&self) -> Result<Vec<(KeyRow, Vec<KeyVersionRow>)>, Error> {
        let mut conn = self.conn()?;
        let key_rows: Vec<KeyRow> = keys::table
            .order(keys::name.asc())
            .select(KeyRow::as_select())
            .load(&mut conn)?;
        let mut version_rows: Vec<KeyVersionRow> = key_versions::table
            .order((key_versions::key_id.asc(), key_versions::version.asc()))
            .select(KeyVersionRow::as_select())
            .load(&mut conn)?;
        let mut out = Vec::with_capacity(key_rows.len());
        for key in key_rows {
            let (mine, rest): (Vec<_>, Vec<_>) =
                version_rows.into_iter().partition(|v| v.key_id == key.id);
            version_rows = rest;
            out.push((key, mine));
        }
        Ok(out)
    }

    /// Inserts a new key and its first version in one transaction.
    pub fn create_key(&self, key: &KeyRow, first: &KeyVersionRow) -> Result<(), Error> {
        let mut conn = self.conn()?;
        let result = conn.immediate_transaction(|conn| {
            diesel::insert_into(keys::table).values(key).execute(conn)?;
            diesel::insert_into(key_versions::table)
                .values(first)
                .execute(conn)?;
            Ok::<_, DieselError>(())
        });
        match result {
            Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => {
                Err(Error::KeyExists(key.name.clone()))
            }
            other => Ok(other?),
        }
    }

    /// Inserts a new version of an existing key. A concurrent rotation that took the same
    /// version number makes this fail with [`Error::Conflict`].
    pub fn add_key_version(&self, version: &KeyVersionRow) -> Result<(), Error> {
        let mut conn = self.conn()?;
        let result = diesel::insert_into(key_versions::table)
            .values(version)
            .execute(&mut conn);
        match result {
            Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => Err(
                Error::Conflict("another rotation of this key finished first"),
            ),
            other => {
                other?;
                Ok(())
            }
        }
    }

    /// Sets the state (`enabled` or `disabled`) of a key.
    pub fn set_key_state(&self, key_id: &str, state: &str) -> Result<(), Error> {
        let mut conn = self.conn()?;
        diesel::update(keys::table.find(key_id))
            .set(keys::state.eq(state))
            .execute(&mut conn)?;
        Ok(())
    }

    /// Inserts a token row.
    pub fn insert_token(&self, token: &TokenRow) -> Result<(), Error> {
        let mut conn = self.conn()?;
        diesel::insert_into(tokens::table)
            .values(token)
            .execute(&mut conn)?;
        Ok(())
    }

    /// Finds a token by the SHA-256 hash of its secret.
    pub fn token_by_hash(&self, hash: &[u8]) -> Result<Option<TokenRow>, Error> {
        let mut conn = self.conn()?;
        Ok(tokens::table
            .filter(tokens::token_hash.eq(hash))
            .select(TokenRow::as_select())
            .first(&mut conn)
            .optional()?)
    }

    /// Finds a token by its accessor.
    pub fn token_by_accessor(&self, accessor: &str) -> Result<Option<TokenRow>, Error> {
        let mut conn = self.conn()?;
        Ok(tokens::table
            .find(accessor)
            .select(TokenRow::as_select())
            .first(&mut conn)
            .optional()?)
    }

    /// Marks a token revoked at `now` unless it already is, and returns the stored row.
    pub fn revoke_token(&self, accessor: &str, now: i64) -> Result<Option<TokenRow>, Error> {
        let mut conn = self.conn()?;
        conn.immediate_transaction(|conn| {
            diesel::update(
                tokens::table
                    .find(accessor)
                    .filter(tokens::revoked_at.is_null()),
            )
            .set(tokens::revoked_at.eq(now))
            .execute(conn)?;
            Ok(tokens::table
                .find(accessor)
                .select(TokenRow::as_select())
                .first(conn)
                .optional()?)
        })
    }
}
