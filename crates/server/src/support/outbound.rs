//! The outbound HTTP client for targets a user configured (notification webhooks today; the
//! pending-orders poll and result webhooks next): no redirects, no environment proxy, a
//! timeout, and a DNS resolver that refuses any name resolving to a non-public address — the
//! connection then goes to exactly the addresses it checked. IP literals bypass resolvers, so
//! [`check_target`] checks them before a request is made.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::guard;

/// A name resolved to a non-public address: the guard refused the target.
#[derive(Debug, thiserror::Error)]
#[error("{host} resolves to {ip}, which is not a public address")]
pub struct NotPublic {
    pub host: String,
    pub ip: IpAddr,
}

/// A resolver that refuses names resolving to any non-public address.
pub(crate) struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if addrs.is_empty() {
                return Err(format!("{host} has no address").into());
            }
            if let Some(bad) = addrs.iter().find(|a| !guard::is_public(a.ip())) {
                let refused: Box<dyn std::error::Error + Send + Sync> = Box::new(NotPublic { host, ip: bad.ip() });
                return Err(refused);
            }
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// The guarded client. Fails only when reqwest cannot build a client at all; the caller stops
/// the start rather than fall back to an unguarded one.
pub fn client(timeout: Duration, allow_private: bool) -> Result<reqwest::Client, reqwest::Error> {
    // No proxy from the environment: a proxy would resolve the target itself, out of the guard's
    // reach (and the connection would not go to the checked address).
    let builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .no_proxy();
    let builder = if allow_private {
        builder
    } else {
        builder.dns_resolver(Arc::new(PublicOnly))
    };
    builder.build()
}

/// Whether a request failed because the guard refused the resolved address.
pub fn refused_by_guard(e: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.downcast_ref::<NotPublic>().is_some() {
            return true;
        }
        source = err.source();
    }
    false
}

/// Checks a target at send time: shape, and (IP literals bypass the resolver) the address.
pub fn check_target(url: &str, allow_private: bool) -> Result<url::Url, String> {
    let parsed = guard::parse_url(url)?;
    if !allow_private {
        let ip: Option<IpAddr> = match parsed.host() {
            Some(url::Host::Ipv4(ip)) => Some(ip.into()),
            Some(url::Host::Ipv6(ip)) => Some(ip.into()),
            _ => None,
        };
        if let Some(ip) = ip.filter(|ip| !guard::is_public(*ip)) {
            return Err(format!("{ip} is not a public address"));
        }
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_checked_at_send_time() {
        assert!(check_target("http://127.0.0.1:9/x", false).is_err());
        assert!(check_target("http://[::1]/x", false).is_err());
        assert!(check_target("http://127.0.0.1:9/x", true).is_ok());
        assert!(check_target("https://93.184.216.34/x", false).is_ok());
    }

    #[tokio::test]
    async fn the_resolver_refuses_names_of_private_addresses_with_a_typed_error() {
        let name: Name = "localhost".parse().expect("name");
        let Err(refused) = PublicOnly.resolve(name).await else {
            panic!("localhost must be refused");
        };
        let not_public = refused
            .downcast_ref::<NotPublic>()
            .expect("the guard's own error, not a DNS failure");
        assert!(!guard::is_public(not_public.ip));
        assert_eq!(not_public.host, "localhost");
    }

    #[tokio::test]
    async fn a_refused_request_is_recognised_by_type() {
        let client = client(Duration::from_secs(5), false).expect("client");
        let e = client
            .get("http://localhost:9/")
            .send()
            .await
            .expect_err("localhost is private");
        assert!(refused_by_guard(&e), "{e:?}");
        let open = super::client(Duration::from_secs(5), true).expect("client");
        // Nothing listens on port 9 (discard): a plain connection failure, not the guard.
        let e = open.get("http://127.0.0.1:9/").send().await.expect_err("closed port");
        assert!(!refused_by_guard(&e), "{e:?}");
    }
}
