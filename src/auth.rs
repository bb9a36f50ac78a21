//! API keys and what each may do: generated once, shown once, stored only as a SHA-256
//! hash, each with a role ([`Role`]) that grants a set of [`Permission`]s.
//!
//! A plain (unsalted, fast) hash is enough here because the keys are 256-bit random
//! values, not passwords: there is no dictionary to attack, and a fast hash lets every
//! request be checked with one indexed lookup.
//!
//! That lookup is cached per process ([`Keys`]): a checkout backend sends the same key
//! with every order, and during a rush the lookup would be a database round trip per
//! order for an answer that rarely changes. The cache holds hashes, never keys, for at
//! most `STOCKROOM_KEY_CACHE_MS` (default 10 s), and at most [`KEY_CACHE_ENTRIES`] of them.
//! That is the bound on revocation: the process that revokes a key forgets its verdicts at
//! once, every other process within the cache time; a subscription opened with the key is
//! closed within the same time. A key created in another process may likewise be refused
//! for that long if it was tried before it existed.

use std::{collections::HashSet, sync::Arc, time::Duration};

use chrono::Utc;
use entity::api_key;
use rand::RngCore;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, sea_query::Expr, sea_query::OnConflict,
};
use sha2::{Digest, Sha256};

pub use entity::api_key::ApiKeyRole as Role;

use crate::{
    db::Database,
    error::{Error, Result},
    inventory::values::Name,
};

/// Prefix of every generated key, so a leaked key is recognisable in a secret scanner.
const KEY_PREFIX: &str = "srk_";

/// How much of a generated key is kept in clear to tell keys apart: `srk_` and 8 of its
/// 64 hex digits (32 bits of 256), useless for guessing the rest.
const SHOWN_PREFIX_LEN: usize = KEY_PREFIX.len() + 8;

/// How often a key's `last_used_at` is written, at most, per process.
pub const LAST_USED_RESOLUTION: Duration = Duration::from_secs(60);

/// How long a key seen valid still skips the anonymous rate limit while its verdict is
/// being looked up again (see [`Keys::is_known_valid`]).
const ADMISSION_MEMORY: Duration = Duration::from_secs(300);

/// Most key verdicts one process remembers (each is a 64-byte hash and a role).
pub const KEY_CACHE_ENTRIES: u64 = 10_000;

/// What a GraphQL field needs from its caller. Every guarded field names one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Admin queries and subscriptions: catalog, stock, ledger, backorder events.
    ReadStock,
    /// Admin mutations of the catalog and of stock.
    WriteStock,
    /// `placeOrder`, `reserveStock`, `releaseReservation`.
    Checkout,
    /// Reading orders and reservations.
    ReadOrders,
    /// Listing, creating and revoking API keys.
    ManageKeys,
}

impl Permission {
    /// Whether `role` grants this permission: the one home of the role table.
    pub fn granted_to(self, role: Role) -> bool {
        match role {
            Role::Admin => true,
            Role::Read => matches!(self, Permission::ReadStock | Permission::ReadOrders),
            Role::Checkout => matches!(self, Permission::Checkout | Permission::ReadOrders),
        }
    }
}

/// Who is calling: decided once per request from the `Authorization` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    Anonymous,
    Key { id: i32, role: Role },
}

impl Caller {
    /// Admits the caller to a field needing `permission`: no valid key is
    /// `UNAUTHENTICATED`, a key whose role lacks it `FORBIDDEN`.
    pub fn require(self, permission: Permission) -> Result<()> {
        match self {
            Caller::Anonymous => Err(Error::Unauthenticated),
            Caller::Key { role, .. } if permission.granted_to(role) => Ok(()),
            Caller::Key { .. } => Err(Error::Forbidden),
        }
    }
}

/// Request data for a caller identified once for a whole WebSocket connection (not per
/// request): its key is re-checked by every guarded field, so a revocation reaches it.
#[derive(Debug, Clone, Copy)]
pub struct IdentifiedPerConnection;

fn hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// A key as just created: its row, and the secret itself, which is never stored.
#[derive(Debug, Clone)]
pub struct CreatedKey {
    pub key: api_key::Model,
    pub secret: String,
}

/// Creates a new random key named `name` with `role`.
pub async fn create_key(db: &Database, name: Name, role: Role) -> Result<CreatedKey> {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let secret = format!("{KEY_PREFIX}{}", hex::encode(bytes));
    let row = api_key::ActiveModel {
        name: Set(name.into_inner()),
        key_hash: Set(hash(&secret)),
        role: Set(role),
        prefix: Set(secret[..SHOWN_PREFIX_LEN].to_owned()),
        created_at: Set(Utc::now()),
        ..Default::default()
    };
    let key = api_key::Entity::insert(row).exec_with_returning(db.conn()).await?;
    Ok(CreatedKey { key, secret })
}

/// Makes `key` a valid ADMIN key (idempotent): used for `STOCKROOM_ADMIN_KEY`. The value
/// came from outside, so none of it is kept in clear. A revoked key stays revoked.
pub async fn register_key(db: &Database, name: &str, key: &str) -> Result<()> {
    let row = api_key::ActiveModel {
        name: Set(name.to_owned()),
        key_hash: Set(hash(key)),
        role: Set(Role::Admin),
        prefix: Set(String::new()),
        created_at: Set(Utc::now()),
        ..Default::default()
    };
    api_key::Entity::insert(row)
        .on_conflict(OnConflict::column(api_key::Column::KeyHash).do_nothing().to_owned())
        .exec_without_returning(db.conn())
        .await?;
    Ok(())
}

/// Every key, oldest first, revoked ones included.
pub async fn list_keys(db: &Database) -> Result<Vec<api_key::Model>> {
    Ok(api_key::Entity::find()
        .order_by_asc(api_key::Column::Id)
        .all(db.conn())
        .await?)
}

/// Revokes key `id` (revoking again keeps the first time). Other processes refuse it
/// once their cached verdict runs out; see [`Keys::revoke`] for this one.
pub async fn revoke_key(db: &Database, id: i32) -> Result<api_key::Model> {
    db.write(&id, |txn, id| {
        Box::pin(async move {
            api_key::Entity::update_many()
                .col_expr(api_key::Column::RevokedAt, Expr::value(Utc::now()))
                .filter(api_key::Column::Id.eq(*id))
                .filter(api_key::Column::RevokedAt.is_null())
                .exec(txn)
                .await?;
            api_key::Entity::find_by_id(*id)
                .one(txn)
                .await?
                .ok_or_else(|| Error::not_found(format!("API key {id}")))
        })
    })
    .await
}

/// The token of a `Bearer` credential; the scheme name is case-insensitive (RFC 7235).
fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn bounded_cache<K, V>(ttl: Duration) -> moka::sync::Cache<K, V>
where
    K: std::hash::Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    moka::sync::Cache::builder()
        .max_capacity(KEY_CACHE_ENTRIES)
        .time_to_live(ttl)
        .build()
}

/// Resolves `Authorization` headers to callers, with a short per-process cache.
#[derive(Clone)]
pub struct Keys {
    db: Database,
    ttl: Duration,
    /// Verdicts by key hash (`Anonymous` for unknown and revoked keys).
    verdicts: moka::sync::Cache<String, Caller>,
    /// Hashes of keys found valid within [`ADMISSION_MEMORY`]: for admission past the
    /// anonymous rate limit only, never for authorization.
    admitted: moka::sync::Cache<String, ()>,
    /// Keys whose `last_used_at` this process wrote within [`LAST_USED_RESOLUTION`].
    recently_used: moka::sync::Cache<i32, ()>,
    /// Keys known live, for open WebSocket connections: remembered for half the cache
    /// time, and re-checked every half, so a revocation elsewhere is seen within one.
    live: moka::sync::Cache<i32, bool>,
    /// Keys this process revoked: refused even if a lookup that began before the
    /// revocation committed puts an old verdict back in the cache.
    revoked_here: Arc<std::sync::Mutex<HashSet<i32>>>,
    revocations: Arc<tokio::sync::Notify>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("cached", &self.verdicts.entry_count())
            .finish()
    }
}

impl Keys {
    /// Keys stored in `db`, each verdict remembered for `ttl`.
    pub fn new(db: Database, ttl: Duration) -> Self {
        Keys {
            db,
            ttl,
            verdicts: bounded_cache(ttl),
            admitted: bounded_cache(ADMISSION_MEMORY),
            recently_used: bounded_cache(LAST_USED_RESOLUTION),
            live: bounded_cache(ttl / 2),
            revoked_here: Arc::default(),
            revocations: Arc::default(),
        }
    }

    /// How long a verdict may be remembered: the documented bound on revocation.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Whether `authorization` carries a key this process already knows to be valid:
    /// such a request skips the anonymous rate limit without any lookup. A key whose
    /// verdict lapsed still counts if it was found valid lately, and no lookup since said
    /// otherwise: else every lapse would count a busy client's requests in flight as
    /// anonymous, and throttle its burst (wrk's 64 checkout clients saw 8–37 such 429s a
    /// run). Authentication still looks the key up again.
    pub fn is_known_valid(&self, authorization: Option<&str>) -> bool {
        let Some(hashed) = authorization.and_then(bearer_token).map(hash) else {
            return false;
        };
        match self.verdicts.get(&hashed) {
            Some(caller) => caller != Caller::Anonymous,
            None => self.admitted.contains_key(&hashed),
        }
    }

    /// Resolves an `Authorization` header value to a caller.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Caller> {
        let Some(key) = authorization.and_then(bearer_token) else {
            return Ok(Caller::Anonymous);
        };
        let hashed = hash(key);
        let caller = match self.verdicts.get(&hashed) {
            Some(caller) => caller,
            None => {
                let known = api_key::Entity::find()
                    .filter(api_key::Column::KeyHash.eq(hashed.as_str()))
                    .filter(api_key::Column::RevokedAt.is_null())
                    .one(self.db.conn())
                    .await?;
                let caller = known.map_or(Caller::Anonymous, |key| Caller::Key {
                    id: key.id,
                    role: key.role,
                });
                if caller == Caller::Anonymous {
                    self.admitted.invalidate(&hashed);
                } else {
                    self.admitted.insert(hashed.clone(), ());
                }
                self.verdicts.insert(hashed, caller);
                caller
            }
        };
        let Caller::Key { id, .. } = caller else {
            return Ok(caller);
        };
        if self.was_revoked_here(id) {
            return Ok(Caller::Anonymous);
        }
        self.note_use(id);
        Ok(caller)
    }

    fn was_revoked_here(&self, id: i32) -> bool {
        self.revoked_here
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .contains(&id)
    }

    /// Records that key `id` was used, at most once per [`LAST_USED_RESOLUTION`], in a
    /// task of its own: never a write on the request's path.
    fn note_use(&self, id: i32) {
        if self.recently_used.contains_key(&id) {
            return;
        }
        self.recently_used.insert(id, ());
        let db = self.db.clone();
        tokio::spawn(async move {
            let written = api_key::Entity::update_many()
                .col_expr(api_key::Column::LastUsedAt, Expr::value(Utc::now()))
                .filter(api_key::Column::Id.eq(id))
                .exec(db.conn())
                .await;
            if let Err(err) = written {
                tracing::debug!(error = %err, key_id = id, "could not record when an API key was last used");
            }
        });
    }

    /// Revokes key `id`; this process refuses it from now on (see [`revoke_key`]).
    pub async fn revoke(&self, id: i32) -> Result<api_key::Model> {
        // Marked before the write commits: a lookup racing with it cannot bring the key
        // back. If the write fails, the key is refused here until the process restarts;
        // better than the other way round.
        self.revoked_here
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(id);
        let revoked = revoke_key(&self.db, id).await?;
        self.verdicts.invalidate_all();
        self.admitted.invalidate_all();
        self.live.insert(id, false);
        self.revocations.notify_waiters();
        Ok(revoked)
    }

    /// Resolves once `caller`'s key is revoked (checked every half cache time, and at
    /// once when this process revokes a key); never for a caller without a key. Open
    /// subscriptions end with it.
    pub async fn revoked(&self, caller: Caller) {
        let Caller::Key { id, .. } = caller else {
            return std::future::pending().await;
        };
        loop {
            let revocation_here = self.revocations.notified();
            if !self.is_live(id).await {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep(self.ttl / 2) => {}
                () = revocation_here => {}
            }
        }
    }

    /// Whether key `id` is still valid, as of at most half the cache time ago: for a
    /// caller identified once for a whole WebSocket connection.
    pub async fn is_live(&self, id: i32) -> bool {
        if self.was_revoked_here(id) {
            return false;
        }
        if let Some(live) = self.live.get(&id) {
            return live;
        }
        match api_key::Entity::find_by_id(id).one(self.db.conn()).await {
            Ok(key) => {
                let live = key.is_some_and(|key| key.revoked_at.is_none());
                self.live.insert(id, live);
                live
            }
            // The database is away: keep the subscription; its own feed reports the outage.
            Err(_) => true,
        }
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

    #[test]
    fn each_role_grants_exactly_its_permissions() {
        use Permission::*;
        let all = [ReadStock, WriteStock, Checkout, ReadOrders, ManageKeys];
        let granted = |role| -> Vec<Permission> { all.into_iter().filter(|p| p.granted_to(role)).collect() };
        assert_eq!(granted(Role::Admin), all);
        assert_eq!(granted(Role::Read), [ReadStock, ReadOrders]);
        assert_eq!(granted(Role::Checkout), [Checkout, ReadOrders]);
    }

    #[test]
    fn no_key_is_unauthenticated_and_a_lesser_role_is_forbidden() {
        let read = Caller::Key {
            id: 1,
            role: Role::Read,
        };
        assert_eq!(
            Caller::Anonymous.require(Permission::ReadStock).unwrap_err().code(),
            "UNAUTHENTICATED"
        );
        assert_eq!(read.require(Permission::WriteStock).unwrap_err().code(), "FORBIDDEN");
        assert!(read.require(Permission::ReadStock).is_ok());
    }
}
