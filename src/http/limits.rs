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

/// Past this many tracked addresses, quiet ones are dropped at once rather than at the
/// next sweep: bounds the memory a client inventing addresses can make us spend.
const MAX_TRACKED: usize = 100_000;

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
        if buckets.len() > MAX_TRACKED {
            buckets.retain_recent();
        }
        buckets.check_key(&client).map_err(|not_until| {
            crate::metrics::rate_limited();
            not_until.wait_time_from(governor::clock::DefaultClock::default().now())
        })
    }

    /// The client a bucket belongs to: the right-most address of the configured header's
    /// last line (what the trusted proxy appended; a proxy may add a line of its own
    /// rather than append to the client's), else the TCP peer's; requests that have
    /// neither (in-process tests) share one. See [`bucket_of`].
    fn client_address(&self, headers: &HeaderMap, extensions: &Extensions) -> IpAddr {
        let forwarded = self
            .client_ip_header
            .as_ref()
            .and_then(|name| headers.get_all(name).iter().next_back())
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.rsplit(',').next())
            .and_then(parse_address);
        let address = forwarded
            .or_else(|| extensions.get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip()))
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        bucket_of(address)
    }
}

/// An address as proxies write it: bare, with a port (`1.2.3.4:5678`), or bracketed IPv6.
fn parse_address(raw: &str) -> Option<IpAddr> {
    let raw = raw.trim();
    raw.parse::<IpAddr>()
        .ok()
        .or_else(|| raw.parse::<SocketAddr>().ok().map(|socket| socket.ip()))
        .or_else(|| raw.trim_start_matches('[').trim_end_matches(']').parse().ok())
}

/// The bucket an address counts against: IPv4 as is; IPv6 by its /64, the block one
/// subscriber gets (otherwise one client could use a new address per request).
fn bucket_of(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::from(segments)
            }
        },
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

#[cfg(test)]
mod tests {
    use super::*;

    fn limit_behind(header: &str) -> AnonymousLimit {
        AnonymousLimit {
            buckets: None,
            client_ip_header: Some(header.parse().unwrap()),
        }
    }

    #[test]
    fn the_client_is_the_last_address_the_proxy_wrote() {
        let limit = limit_behind("x-forwarded-for");
        let mut headers = HeaderMap::new();
        headers.append("x-forwarded-for", "6.6.6.6".parse().unwrap());
        headers.append("x-forwarded-for", "1.1.1.1, 203.0.113.9:41000".parse().unwrap());
        let client = limit.client_address(&headers, &Extensions::new());
        assert_eq!(client, "203.0.113.9".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64_block() {
        let a = bucket_of("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = bucket_of("2001:db8:1:2:bbbb::9".parse().unwrap());
        let other = bucket_of("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, other);
        assert_eq!(
            bucket_of("::ffff:192.0.2.1".parse().unwrap()),
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(parse_address("[2001:db8::1]"), "2001:db8::1".parse().ok());
    }
}
