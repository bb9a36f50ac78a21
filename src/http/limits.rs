//! The rate limit for callers without a valid API key, per client address.
//!
//! Storefront fields are public, so anyone can send them; this keeps one client from
//! flooding the read path (and the database behind it) during a rush. A request whose
//! key this process already knows to be valid never touches the limit; any other request
//! (no key, an unknown key, a key not yet looked up) takes a token before anything else
//! is done for it, so even a flood of made-up keys costs one bucket check each, not a
//! database lookup. Token buckets from `governor` (GCRA), keyed by address; addresses not
//! seen for a while are forgotten.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    num::NonZeroU32,
    sync::{Arc, Weak},
    time::Duration,
};

use axum::{
    extract::ConnectInfo,
    http::{Extensions, HeaderMap, HeaderName},
};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter, clock::Clock};

use crate::config::Config;

/// How often buckets of quiet addresses are dropped.
const FORGET_EVERY: Duration = Duration::from_secs(60);

/// Per-address token buckets for requests without a valid key.
#[derive(Clone)]
pub struct AnonymousLimit {
    buckets: Option<Arc<DefaultKeyedRateLimiter<IpAddr>>>,
    client_ip_header: Option<HeaderName>,
}

impl AnonymousLimit {
    /// The limit `config` asks for (`STOCKROOM_ANONYMOUS_RATE` 0: none).
    pub fn from_config(config: &Config) -> Self {
        let buckets = NonZeroU32::new(config.anonymous_rate).map(|rate| {
            let burst = NonZeroU32::new(config.anonymous_burst).unwrap_or(rate);
            Arc::new(RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)))
        });
        if let Some(buckets) = &buckets {
            forget_quiet_addresses(Arc::downgrade(buckets));
        }
        AnonymousLimit {
            buckets,
            client_ip_header: config.client_ip_header.clone(),
        }
    }

    /// Takes a token for the request's client; `Err` says how long until the next one.
    pub fn check(&self, headers: &HeaderMap, extensions: &Extensions) -> Result<(), Duration> {
        let Some(buckets) = &self.buckets else {
            return Ok(());
        };
        let client = self.client_address(headers, extensions);
        buckets.check_key(&client).map_err(|not_until| {
            crate::metrics::rate_limited();
            not_until.wait_time_from(governor::clock::DefaultClock::default().now())
        })
    }

    /// The configured header's right-most address (the one the trusted proxy appended),
    /// else the TCP peer's; requests that have neither (in-process tests) share one.
    fn client_address(&self, headers: &HeaderMap, extensions: &Extensions) -> IpAddr {
        let forwarded = self
            .client_ip_header
            .as_ref()
            .and_then(|name| headers.get(name))
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.rsplit(',').next())
            .and_then(|last| last.trim().parse::<IpAddr>().ok());
        forwarded
            .or_else(|| extensions.get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip()))
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    }
}

/// Drops the buckets of addresses that are full again, so the map stays as large as the
/// set of recently active clients; stops when the limiter is gone.
fn forget_quiet_addresses(buckets: Weak<DefaultKeyedRateLimiter<IpAddr>>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        let mut every = tokio::time::interval(FORGET_EVERY);
        every.tick().await;
        loop {
            every.tick().await;
            let Some(buckets) = buckets.upgrade() else {
                return;
            };
            buckets.retain_recent();
            buckets.shrink_to_fit();
        }
    });
}
