//! Leaf: HTTP requests tally makes to addresses its users give (webhook endpoints), and the address rule.
//!
//! A URL is `http://` or `https://` with a host. Before connecting, the host is resolved and every address is
//! checked: private, loopback, link-local, shared (CGNAT), unspecified, multicast and documentation ranges are
//! refused unless private addresses are allowed (`--webhook-allow-private`). The socket is then opened to an
//! address that was checked — not to the name again — so a name that resolves differently a moment later (DNS
//! rebinding) cannot slip past the rule. HTTPS is rustls with the Mozilla root certificates.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use http_body_util::{BodyExt, Full};

/// How much of an answer's body is kept.
pub const ANSWER_KEPT: usize = 1024;

/// A URL's parts that a request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `https`.
    pub tls: bool,
    /// The host, without brackets for IPv6.
    pub host: String,
    /// The port (default 80 or 443).
    pub port: u16,
    /// `Host:` header value (as written in the URL).
    pub authority: String,
    /// Path and query (`/` when empty).
    pub path: String,
}

/// Reads a webhook URL: `http(s)://host[:port][/path][?query]`, no user info, at most 2,048 bytes.
///
/// # Errors
/// A sentence saying what is wrong.
pub fn parse_url(url: &str) -> Result<Target, String> {
    if url.len() > 2048 {
        return Err("is longer than 2,048 bytes".into());
    }
    let uri: axum::http::Uri = url.parse().map_err(|_| "is not a URL".to_owned())?;
    let tls = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err("must start with https:// or http://".into()),
    };
    let authority = uri.authority().ok_or_else(|| "has no host".to_owned())?;
    if authority.as_str().contains('@') {
        return Err("must not hold a user name or password".into());
    }
    let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_owned();
    if host.is_empty() {
        return Err("has no host".into());
    }
    let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    Ok(Target {
        tls,
        host,
        port,
        authority: authority.as_str().to_owned(),
        path: if path.is_empty() { "/".into() } else { path.to_owned() },
    })
}

/// Whether an address is on the public internet: not private, loopback, link-local, shared (100.64/10),
/// unspecified, broadcast, multicast, documentation or benchmarking; IPv6 likewise (unique local fc00::/7,
/// link-local fe80::/10, IPv4-mapped and -compatible addresses judged as their IPv4 address).
#[must_use]
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && c == 0)
                || (a == 198 && (b == 18 || b == 19))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            let compatible = v6.segments()[..6].iter().all(|s| *s == 0);
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || compatible
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments()[1] == 0x0db8)
        }
    }
}

/// An answer: its status and the first [`ANSWER_KEPT`] bytes of its body (lossy UTF-8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// The body's beginning.
    pub body: String,
}

/// Why no answer came.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failed {
    /// The address rule refused the host.
    #[error("refused: {0}")]
    Refused(String),
    /// No answer within the time allowed.
    #[error("timed out after {0} ms")]
    Timeout(u128),
    /// Resolving, connecting, TLS or HTTP failed.
    #[error("{0}")]
    Transport(String),
}

/// POSTs `body` with `headers` to `url`, giving up after `timeout` (connection included).
///
/// # Errors
/// [`Failed`].
pub async fn post(
    url: &str,
    headers: &[(&str, String)],
    body: Bytes,
    timeout: Duration,
    allow_private: bool,
) -> Result<Answer, Failed> {
    let started = Instant::now();
    let target = parse_url(url).map_err(|m| Failed::Transport(format!("the URL {m}")))?;
    match tokio::time::timeout(timeout, send(&target, headers, body, allow_private)).await {
        Ok(answer) => answer,
        Err(_) => Err(Failed::Timeout(started.elapsed().as_millis())),
    }
}

async fn send(
    target: &Target,
    headers: &[(&str, String)],
    body: Bytes,
    allow_private: bool,
) -> Result<Answer, Failed> {
    let transport = |e: &dyn std::fmt::Display| Failed::Transport(e.to_string());
    let addresses: Vec<SocketAddr> = tokio::net::lookup_host((target.host.as_str(), target.port))
        .await
        .map_err(|e| Failed::Transport(format!("cannot resolve {}: {e}", target.host)))?
        .collect();
    if let Some(private) = addresses.iter().find(|a| !is_public(a.ip())).filter(|_| !allow_private) {
        return Err(Failed::Refused(format!(
            "{} resolves to {}, a private, loopback or link-local address (start tally with \
             --webhook-allow-private to allow such addresses)",
            target.host,
            private.ip()
        )));
    }
    let address =
        addresses.first().ok_or_else(|| Failed::Transport(format!("{} has no address", target.host)))?;
    let tcp = tokio::net::TcpStream::connect(address).await.map_err(|e| transport(&e))?;
    let _ = tcp.set_nodelay(true);
    let request = axum::http::Request::post(target.path.as_str())
        .header("host", target.authority.as_str())
        .header("content-type", "application/json")
        .header("user-agent", concat!("tally-webhooks/", env!("CARGO_PKG_VERSION")));
    let request = headers.iter().fold(request, |r, (k, v)| r.header(*k, v.as_str()));
    let request = request.body(Full::new(body)).map_err(|e| transport(&e))?;
    if target.tls {
        let name = rustls_name(&target.host)?;
        let tls = tls_connector().connect(name, tcp).await.map_err(|e| transport(&e))?;
        exchange(hyper_util::rt::TokioIo::new(tls), request).await
    } else {
        exchange(hyper_util::rt::TokioIo::new(tcp), request).await
    }
}

async fn exchange<T>(io: T, request: axum::http::Request<Full<Bytes>>) -> Result<Answer, Failed>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let transport = |e: &dyn std::fmt::Display| Failed::Transport(e.to_string());
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(io).await.map_err(|e| transport(&e))?;
    let driver = tokio::spawn(connection);
    let answer = async {
        let response = sender.send_request(request).await.map_err(|e| transport(&e))?;
        let status = response.status().as_u16();
        let mut body = response.into_body();
        let mut kept = Vec::with_capacity(ANSWER_KEPT);
        while kept.len() < ANSWER_KEPT {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        let room = ANSWER_KEPT - kept.len();
                        kept.extend_from_slice(&data[..data.len().min(room)]);
                    }
                }
                Some(Err(_)) | None => break,
            }
        }
        Ok(Answer { status, body: String::from_utf8_lossy(&kept).into_owned() })
    }
    .await;
    driver.abort();
    answer
}

fn rustls_name(host: &str) -> Result<tokio_rustls::rustls::pki_types::ServerName<'static>, Failed> {
    tokio_rustls::rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| Failed::Transport(format!("{host} is not a TLS server name: {e}")))
}

fn tls_connector() -> tokio_rustls::TlsConnector {
    static CONFIG: OnceLock<Arc<tokio_rustls::rustls::ClientConfig>> = OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        let roots = tokio_rustls::rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        // ring, not aws-lc-rs (rustls's default, which needs cmake and a long C build): rustls 0.23.48 marks ring's
        // provider deprecated for lacking post-quantum key exchange; the classical suites it has are current.
        #[allow(deprecated)]
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map(|b| b.with_root_certificates(roots).with_no_client_auth())
            .unwrap_or_else(|_| unreachable!("ring supports the default protocol versions"));
        Arc::new(config)
    });
    tokio_rustls::TlsConnector::from(config.clone())
}

#[cfg(test)]
mod tests {
    use super::{is_public, parse_url};

    #[test]
    fn private_loopback_and_link_local_addresses_are_not_public() {
        for ip in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "127.0.0.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "2001:db8::1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn urls_are_http_or_https_with_a_host_and_no_user_info() {
        let t = parse_url("https://hooks.example.com/in?x=1").unwrap();
        assert_eq!(
            (t.tls, t.host.as_str(), t.port, t.path.as_str()),
            (true, "hooks.example.com", 443, "/in?x=1")
        );
        let t = parse_url("http://[::1]:8080").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.path.as_str()), ("::1", 8080, "/"));
        for bad in ["ftp://x.com/", "https://user:pw@x.com/", "x.com/hook", "https://", "not a url"] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }
}
