//! The outbound-network rule (docs/product.md §8): notification and webhook targets must resolve only to
//! public addresses. [`is_public`] is the classification; [`check_url`] validates a URL when it
//! is saved (scheme, shape, and every address its host resolves to). Delivery re-checks and
//! connects to the checked address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::Url;

/// Longest outbound URL accepted.
pub const MAX_URL_LEN: usize = 2048;

fn v4_is_public(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let blocked = a == 0                                   // "this network", 0.0.0.0/8
        || a == 10                                         // private
        || a == 127                                        // loopback
        || (a == 100 && (64..128).contains(&b))            // CGNAT 100.64/10
        || (a == 169 && b == 254)                          // link-local, cloud metadata
        || (a == 172 && (16..32).contains(&b))             // private
        || (a == 192 && b == 0 && c == 0)                  // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2)                  // TEST-NET-1
        || (a == 192 && b == 88 && c == 99)                // 6to4 relay anycast
        || (a == 192 && b == 168)                          // private
        || (a == 198 && (b == 18 || b == 19))              // benchmarking 198.18/15
        || (a == 198 && b == 51 && c == 100)               // TEST-NET-2
        || (a == 203 && b == 0 && c == 113)                // TEST-NET-3
        || a >= 224; // multicast 224/4, reserved 240/4, broadcast
    !blocked
}

/// The IPv4 address in the last 32 bits of an IPv6 address.
fn low_v4(s: &[u16; 8]) -> Ipv4Addr {
    Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8)
}

fn v6_is_public(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_is_public(v4); // ::ffff:a.b.c.d
    }
    if s[..4] == [0; 4] && s[4] == 0xffff && s[5] == 0 {
        // ::ffff:0:a.b.c.d — IPv4-translated (SIIT, RFC 2765): as public as the IPv4 address.
        return v4_is_public(low_v4(&s));
    }
    if (s[4] & 0xfdff) == 0 && s[5] == 0x5efe {
        // ISATAP interface identifier (::0:5efe:a.b.c.d or ::200:5efe:a.b.c.d, any prefix):
        // both the prefix and the embedded IPv4 address must be public.
        if !v4_is_public(low_v4(&s)) {
            return false;
        }
    }
    if s[..6] == [0; 6] {
        // ::/96 — IPv4-compatible (deprecated), including :: and ::1.
        return v4_is_public(Ipv4Addr::new(
            (s[6] >> 8) as u8,
            s[6] as u8,
            (s[7] >> 8) as u8,
            s[7] as u8,
        ));
    }
    // NAT64: the well-known 64:ff9b::/96 and the local-use 64:ff9b:1::/48.
    let nat64 = s[0] == 0x64 && s[1] == 0xff9b && (s[2..6] == [0; 4] || s[2] == 1);
    let blocked = nat64
        || (s[0] & 0xfe00) == 0xfc00                                      // ULA fc00::/7
        || (s[0] & 0xffc0) == 0xfe80                                      // link-local fe80::/10
        || (s[0] & 0xffc0) == 0xfec0                                      // site-local fec0::/10
        || (s[0] & 0xff00) == 0xff00                                      // multicast
        || (s[0] == 0x2001 && s[1] == 0x0db8)                             // documentation
        || (s[0] == 0x2001 && s[1] == 0)                                  // Teredo 2001::/32
        || s[0] == 0x0100 && s[1..4] == [0; 3]; // discard-only 100::/64
    if blocked {
        return false;
    }
    if s[0] == 0x2002 {
        // 6to4 embeds an IPv4 address; it is as public as that address.
        return v4_is_public(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ));
    }
    true
}

/// Whether an address may be the target of an outbound request.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4_is_public(v4),
        IpAddr::V6(v6) => v6_is_public(v6),
    }
}

/// Validates an outbound URL's shape: http/https, a host, no credentials, bounded length.
pub fn parse_url(text: &str) -> Result<Url, String> {
    if text.len() > MAX_URL_LEN {
        return Err(format!("must be at most {MAX_URL_LEN} characters"));
    }
    let url = Url::parse(text).map_err(|e| format!("is not a valid URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must be an http or https URL".into());
    }
    if url.host().is_none() {
        return Err("must name a host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials; use the auth token field".into());
    }
    Ok(url)
}

/// Full check of an outbound URL: shape, then every address the host resolves to must be
/// public unless `allow_private`. Returns the normalised URL.
pub async fn check_url(text: &str, allow_private: bool) -> Result<Url, String> {
    let url = parse_url(text)?;
    if allow_private {
        return Ok(url);
    }
    let host = url
        .host_str()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = url.port_or_known_default().unwrap_or(443);
    let addrs: Vec<IpAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => tokio::net::lookup_host((host, port))
            .await
            .map_err(|_| format!("host {host} could not be resolved"))?
            .map(|sa| sa.ip())
            .collect(),
    };
    if addrs.is_empty() {
        return Err(format!("host {host} could not be resolved"));
    }
    if let Some(bad) = addrs.iter().find(|ip| !is_public(**ip)) {
        return Err(format!("resolves to {bad}, which is not a public address"));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocked_ranges() {
        for ip in [
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "127.0.0.1",
            "127.255.255.254",
            "100.64.0.1",
            "100.127.255.255",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "192.0.0.8",
            "192.0.2.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.1.1.1",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "::10.0.0.1",
            "64:ff9b::8.8.8.8",
            "64:ff9b::a00:1",
            "64:ff9b:1::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "2001:db8::1",
            "2001::1",
            "2002:7f00:1::1",
            "2002:0a00:1::",
            "100::1",
            // issue 12: every other embedding of a private IPv4 address
            "::ffff:0:a9fe:a9fe",
            "::ffff:0:169.254.169.254",
            "::ffff:0:7f00:1",
            "::ffff:0:10.0.0.1",
            "::ffff:0:192.168.0.1",
            "::ffff:0:0.0.0.0",
            "2606:4700::5efe:a9fe:a9fe",
            "2606:4700::200:5efe:7f00:1",
            "2606:4700::5efe:10.1.2.3",
        ] {
            assert!(!is_public(ip.parse().expect(ip)), "{ip} must be blocked");
        }
    }

    #[test]
    fn public_addresses() {
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "93.184.216.34",
            "100.63.255.255",
            "100.128.0.1",
            "172.32.0.1",
            "198.20.0.1",
            "2606:4700:4700::1111",
            "2a00:1450::1",
            "::ffff:8.8.8.8",
            "2002:0808:0808::1",
            "::ffff:0:8.8.8.8",
            "2606:4700::5efe:8.8.8.8",
        ] {
            assert!(is_public(ip.parse().expect(ip)), "{ip} must be allowed");
        }
    }

    #[tokio::test]
    async fn urls() {
        assert!(check_url("https://93.184.216.34/hook", false).await.is_ok());
        assert!(check_url("http://[2606:4700:4700::1111]:8080/x", false).await.is_ok());
        for bad in [
            "ftp://93.184.216.34/",
            "https://u:p@93.184.216.34/",
            "not a url",
            "https://127.0.0.1/",
            "http://[::1]/",
            "http://[::ffff:7f00:1]/",
            "http://[::ffff:0:a9fe:a9fe]/",
            "http://localhost:9/",
            "http://169.254.169.254/latest",
        ] {
            assert!(check_url(bad, false).await.is_err(), "{bad}");
        }
        assert!(
            check_url("http://127.0.0.1:9/", true).await.is_ok(),
            "operator setting allows private targets"
        );
        assert!(
            check_url("ftp://127.0.0.1/", true).await.is_err(),
            "scheme still checked"
        );
    }
}
