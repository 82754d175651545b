//! Egress allowlists for sandboxes (issue 18, docs/egress.md), enforced
//! outside the sandbox.
//!
//! - [`host`]: the host side of one sandbox: a slot (addresses, names)
//!   reserved under a lock, a network namespace joined to the host by a
//!   veth, phantom's nftables table, the proxy process; torn down with the
//!   sandbox and swept after a kill -9.
//! - [`sniff`]: the HTTP Host header and the TLS SNI, read from the first
//!   bytes of a connection.
//! - [`dns`]: the few DNS messages the resolver and the proxy need.
//! - `proxy` (feature `proxy`, tokio): the transparent TCP proxy and the
//!   resolver, run as `phantom-server egress --config FILE`.

pub mod dns;
pub mod host;
#[cfg(feature = "proxy")]
pub mod proxy;
pub mod sniff;

/// The proxy's configuration, written by [`host`] and read by `proxy`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ProxyConfig {
    /// The sandbox's id (logged with every decision).
    pub sandbox: String,
    /// The host end of the veth: the proxy and resolver listen here.
    pub listen: std::net::Ipv4Addr,
    /// Where nftables redirects the sandbox's TCP.
    pub proxy_port: u16,
    /// `--allow` and `--allow-cidr`, as given.
    pub allow: Vec<String>,
    pub allow_cidr: Vec<String>,
    /// The upstream resolver.
    pub upstream: std::net::SocketAddr,
    /// The sandbox network's own range (refused).
    pub sandbox_net: String,
    /// Bumped by each live update; the proxy writes the one it applies to
    /// `applied` beside this file, and the update waits for it.
    #[serde(default)]
    pub generation: u64,
}
