//! Every setting of the server: command-line flag, environment variable and default.
//!
//! Flags win over the environment (clap's own precedence). Secrets are wrapped in
//! [`Secret`], whose `Debug` never shows the value, so logging a `Config` is safe.

use std::{fmt, net::SocketAddr, str::FromStr, time::Duration};

use clap::builder::BoolishValueParser;

/// A value that must never appear in logs or error messages.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

/// Server settings (see the contract's "Command line and configuration").
#[derive(clap::Args, Debug, Clone)]
pub struct Config {
    /// `sqlite://…` or `postgres://…`; by default a SQLite file in the working directory.
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://stockroom.sqlite?mode=rwc")]
    pub database_url: String,

    /// Address to listen on.
    #[arg(long = "addr", env = "STOCKROOM_ADDR", default_value = "127.0.0.1:8000")]
    pub addr: SocketAddr,

    /// If set, this value is a valid admin API key (stored hashed at start).
    #[arg(long, env = "STOCKROOM_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<Secret>,

    /// Seed demo data into a new database (`0` disables).
    #[arg(long, env = "STOCKROOM_DEMO", default_value = "1", value_parser = BoolishValueParser::new())]
    pub demo: bool,

    /// Stripe webhook signing secret(s), comma-separated for rotation.
    #[arg(long, env = "STRIPE_WEBHOOK_SECRET", value_delimiter = ',', hide_env_values = true)]
    pub stripe_webhook_secret: Vec<Secret>,

    /// Stripe API key; when set, rejected orders are refunded.
    #[arg(long, env = "STRIPE_SECRET_KEY", hide_env_values = true)]
    pub stripe_secret_key: Option<Secret>,

    /// Base URL of the Stripe API (tests point it at a local fake).
    #[arg(long, env = "STRIPE_API_BASE")]
    pub stripe_api_base: Option<String>,

    /// How long a write waits for a row lock before failing with LOCK_TIMEOUT, in ms
    /// (1 to 600000: PostgreSQL reads 0 as "wait forever", which is no bound at all).
    #[arg(long, env = "STOCKROOM_LOCK_TIMEOUT_MS", default_value_t = 5000,
          value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub lock_timeout_ms: u64,

    /// How long a request waits for a pooled connection (or for the database to come back)
    /// before failing, in ms (1 to 600000).
    #[arg(long, env = "STOCKROOM_DB_ACQUIRE_TIMEOUT_MS", default_value_t = 5000,
          value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub db_acquire_timeout_ms: u64,

    /// How often each process reads the event outbox even without a notification, in ms:
    /// the bound on delivery delay when a notification is lost, or without LISTEN/NOTIFY
    /// (10 to 600000: below that the poll would keep a core busy).
    #[arg(long, env = "STOCKROOM_EVENT_POLL_MS", default_value_t = 500,
          value_parser = clap::value_parser!(u64).range(10..=600_000))]
    pub event_poll_ms: u64,

    /// Announce committed events with PostgreSQL's `NOTIFY` and wake on them with `LISTEN`
    /// (`0`: the outbox poll alone delivers them, for engines without LISTEN/NOTIFY such
    /// as CockroachDB and YugabyteDB; delivery then waits up to `STOCKROOM_EVENT_POLL_MS`).
    #[arg(long, env = "STOCKROOM_EVENT_NOTIFY", default_value = "1", value_parser = BoolishValueParser::new())]
    pub event_notify: bool,

    /// Maximum number of pooled database connections (1 to 1000).
    #[arg(long, env = "STOCKROOM_DB_POOL_SIZE", default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub db_pool_size: u32,

    /// Largest `POST /graphql` body accepted, in bytes (1024 to 67108864); a larger one is
    /// refused with 413 before anything is parsed.
    #[arg(long, env = "STOCKROOM_MAX_BODY_BYTES", default_value_t = 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(1024..=64 * 1024 * 1024))]
    pub max_body_bytes: u64,

    /// Placement queues per process (1 to 64): each has one transaction in flight, into
    /// which the orders that queued meanwhile are combined (see `inventory::combiner`).
    #[arg(long, env = "STOCKROOM_PLACEMENT_LANES", default_value_t = 4,
          value_parser = clap::value_parser!(u64).range(1..=64))]
    pub placement_lanes: u64,

    /// How long each process remembers an API key's verdict, in ms (1 to 600000): the
    /// bound on how long a revoked key keeps working in another process.
    #[arg(long, env = "STOCKROOM_KEY_CACHE_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub key_cache_ms: u64,

    /// Requests per second one client address may send without a valid API key (0: no
    /// limit); past it the answer is 429 with `Retry-After`.
    #[arg(long, env = "STOCKROOM_ANONYMOUS_RATE", default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub anonymous_rate: u32,

    /// Requests one client address may send at once without a key before the rate applies.
    #[arg(long, env = "STOCKROOM_ANONYMOUS_BURST", default_value_t = 40,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub anonymous_burst: u32,

    /// Behind a proxy: the header it puts the client address in (e.g. `x-forwarded-for`;
    /// its right-most address is used, the one the proxy itself appended). Unset: the
    /// address of the TCP peer.
    #[arg(long, env = "STOCKROOM_CLIENT_IP_HEADER")]
    pub client_ip_header: Option<axum::http::HeaderName>,

    /// Browser origins allowed to call `/graphql` cross-origin (comma-separated, e.g.
    /// `https://shop.example`; `*` for any). Without credentials: only the storefront
    /// fields work from there. Empty: no CORS headers at all.
    #[arg(long, env = "STOCKROOM_CORS_ORIGINS", value_delimiter = ',', value_parser = parse_origin)]
    pub cors_origins: Vec<axum::http::HeaderValue>,

    /// After SIGTERM or Ctrl-C: how long requests in flight and open subscriptions get to
    /// finish, in ms (1 to 600000). Past it the process stops anyway, with exit status 1.
    #[arg(long, env = "STOCKROOM_SHUTDOWN_GRACE_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub shutdown_grace_ms: u64,

    /// `text` (human-readable) or `json` (one JSON object per log record, for collectors).
    #[arg(long, env = "STOCKROOM_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// How log records are written (to stderr).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// An origin as browsers send it: `*`, or `scheme://host[:port]` with nothing after it.
fn parse_origin(origin: &str) -> Result<axum::http::HeaderValue, String> {
    let origin = origin.trim();
    let valid = origin == "*"
        || origin.split_once("://").is_some_and(|(scheme, host)| {
            matches!(scheme, "http" | "https") && !host.is_empty() && !host.contains('/')
        });
    if !valid {
        return Err(format!("{origin:?} is not an origin like https://shop.example"));
    }
    axum::http::HeaderValue::from_str(origin).map_err(|err| err.to_string())
}

impl Config {
    /// The bounded lock wait for writes.
    pub fn lock_timeout(&self) -> Duration {
        Duration::from_millis(self.lock_timeout_ms)
    }

    /// How long a shutdown waits for requests and subscriptions to finish.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }

    /// How long an API key's verdict is cached.
    pub fn key_cache(&self) -> Duration {
        Duration::from_millis(self.key_cache_ms)
    }

    /// Settings for tests and embedding: defaults, with the given database.
    pub fn for_database(database_url: impl Into<String>) -> Self {
        Config {
            database_url: database_url.into(),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_key: None,
            demo: false,
            stripe_webhook_secret: Vec::new(),
            stripe_secret_key: None,
            stripe_api_base: None,
            lock_timeout_ms: 5000,
            db_acquire_timeout_ms: 5000,
            event_poll_ms: 500,
            event_notify: true,
            db_pool_size: 20,
            max_body_bytes: 1024 * 1024,
            placement_lanes: 4,
            key_cache_ms: 10_000,
            anonymous_rate: 20,
            anonymous_burst: 40,
            client_ip_header: None,
            cors_origins: Vec::new(),
            shutdown_grace_ms: 10_000,
            log_format: LogFormat::Text,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: Config,
    }

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        Cli::try_parse_from(std::iter::once("stockroom").chain(args.iter().copied())).map(|cli| cli.config)
    }

    #[test]
    fn settings_that_would_disable_their_own_bound_are_refused() {
        for args in [
            ["--lock-timeout-ms", "0"],
            ["--event-poll-ms", "0"],
            ["--db-acquire-timeout-ms", "0"],
            ["--db-pool-size", "0"],
            ["--max-body-bytes", "0"],
            ["--key-cache-ms", "0"],
            ["--anonymous-burst", "0"],
            ["--shutdown-grace-ms", "0"],
        ] {
            let err = parse(&args).err().unwrap_or_else(|| panic!("{args:?} was accepted"));
            assert!(err.to_string().contains("not in"), "{args:?}: {err}");
        }
    }

    #[test]
    fn the_defaults_and_the_contracts_test_settings_agree() {
        let parsed = parse(&[]).unwrap();
        let programmatic = Config::for_database(parsed.database_url.clone());
        assert_eq!(parsed.lock_timeout_ms, programmatic.lock_timeout_ms);
        assert_eq!(parsed.event_poll_ms, programmatic.event_poll_ms);
        assert_eq!(parsed.db_pool_size, programmatic.db_pool_size);
        assert_eq!(parsed.max_body_bytes, programmatic.max_body_bytes);
        assert_eq!(parsed.key_cache_ms, programmatic.key_cache_ms);
        assert_eq!(parsed.anonymous_rate, programmatic.anonymous_rate);
        assert_eq!(parsed.anonymous_burst, programmatic.anonymous_burst);
        assert_eq!(parsed.shutdown_grace_ms, programmatic.shutdown_grace_ms);
        assert_eq!(parsed.log_format, programmatic.log_format);
    }

    #[test]
    fn cors_origins_must_be_bare_origins() {
        let parsed = parse(&["--cors-origins", "https://shop.example,http://localhost:3000"]).unwrap();
        assert_eq!(parsed.cors_origins.len(), 2);
        assert!(parse(&["--cors-origins", "*"]).is_ok());
        for bad in ["shop.example", "https://shop.example/path", "ftp://shop.example"] {
            assert!(parse(&["--cors-origins", bad]).is_err(), "{bad} was accepted");
        }
    }
}
