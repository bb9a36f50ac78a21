//! Admin API keys: generated once, shown once, stored only as a SHA-256 hash.
//!
//! A plain (unsalted, fast) hash is enough here because the keys are 256-bit random
//! values, not passwords: there is no dictionary to attack, and a fast hash lets every
//! request be checked with one indexed lookup.
//!
//! That lookup is cached per process ([`Keys`]): a checkout backend sends the same key
//! with every order, and during a rush the lookup would be a database round trip per
//! order for an answer that does not change. The cache holds hashes, never keys, for at
//! most [`KEY_CACHE_TTL`], and at most [`KEY_CACHE_ENTRIES`] of them; so a key created in
//! another process may be refused for up to that long if it was tried before it existed.

use std::time::Duration;

use chrono::Utc;
use entity::api_key;
use rand::RngCore;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, sea_query::OnConflict};
use sha2::{Digest, Sha256};

use crate::{db::Database, error::Result};

/// Prefix of every generated key, so a leaked key is recognisable in a secret scanner.
const KEY_PREFIX: &str = "srk_";

/// Who is calling: decided once per request from the `Authorization` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    Admin,
    Anonymous,
}

fn hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Creates a new random key named `name`; the returned plaintext is never stored.
pub async fn create_key(db: &Database, name: &str) -> Result<String> {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let key = format!("{KEY_PREFIX}{}", hex::encode(bytes));
    register_key(db, name, &key).await?;
    Ok(key)
}

/// Makes `key` valid (idempotent): used for `STOCKROOM_ADMIN_KEY`.
pub async fn register_key(db: &Database, name: &str, key: &str) -> Result<()> {
    let row = api_key::ActiveModel {
        name: Set(name.to_owned()),
        key_hash: Set(hash(key)),
        created_at: Set(Utc::now()),
        ..Default::default()
    };
    api_key::Entity::insert(row)
        .on_conflict(OnConflict::column(api_key::Column::KeyHash).do_nothing().to_owned())
        .exec_without_returning(db.conn())
        .await?;
    Ok(())
}

/// The token of a `Bearer` credential; the scheme name is case-insensitive (RFC 7235).
fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// How long a key's verdict is remembered by one process.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(10);

/// Most key verdicts one process remembers (each is a 64-byte hash and a flag).
pub const KEY_CACHE_ENTRIES: u64 = 10_000;

/// Resolves `Authorization` headers to callers, with a short per-process cache.
#[derive(Clone)]
pub struct Keys {
    db: Database,
    verdicts: moka::sync::Cache<String, Caller>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("cached", &self.verdicts.entry_count())
            .finish()
    }
}

impl Keys {
    /// Keys stored in `db`.
    pub fn new(db: Database) -> Self {
        Keys {
            db,
            verdicts: moka::sync::Cache::builder()
                .max_capacity(KEY_CACHE_ENTRIES)
                .time_to_live(KEY_CACHE_TTL)
                .build(),
        }
    }

    /// Resolves an `Authorization` header value to a caller.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Caller> {
        let Some(key) = authorization.and_then(bearer_token) else {
            return Ok(Caller::Anonymous);
        };
        let hashed = hash(key);
        if let Some(caller) = self.verdicts.get(&hashed) {
            return Ok(caller);
        }
        let known = api_key::Entity::find()
            .filter(api_key::Column::KeyHash.eq(hashed.as_str()))
            .one(self.db.conn())
            .await?;
        let caller = if known.is_some() {
            Caller::Admin
        } else {
            Caller::Anonymous
        };
        self.verdicts.insert(hashed, caller);
        Ok(caller)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_read_whatever_the_scheme_case() {
        assert_eq!(bearer_token("Bearer srk_1"), Some("srk_1"));
        assert_eq!(bearer_token("bearer  srk_1 "), Some("srk_1"));
        assert_eq!(bearer_token("Basic dXNlcg=="), None);
        assert_eq!(bearer_token("srk_1"), None);
    }

    #[test]
    fn hashes_are_stable_and_hide_the_key() {
        let hashed = hash("srk_example");
        assert_eq!(hashed, hash("srk_example"));
        assert_eq!(hashed.len(), 64);
        assert!(!hashed.contains("example"));
    }
}
