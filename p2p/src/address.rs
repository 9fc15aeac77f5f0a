//! `PeerAddress`: how a peer is reached. A worker reports its swarm's
//! address to the coordinator, which hands it to other workers fetching the
//! same file (the coordinator is the tracker). The address carries the
//! peer's key: a connection succeeds only with the peer that holds it
//! (QUIC with TLS on ed25519 keys), so a forged address cannot impersonate
//! another peer.

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use iroh::{EndpointAddr, EndpointId, TransportAddr};

/// A peer's key and the IP addresses it listens on, written
/// `KEY@IP:PORT[,IP:PORT...]` (the key in hex).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerAddress {
    id: EndpointId,
    sockets: BTreeSet<SocketAddr>,
}

/// Text that is no `PeerAddress`.
#[derive(Debug, thiserror::Error)]
#[error("not a peer address ({0}): expected KEY@IP:PORT[,IP:PORT...]")]
pub struct ParsePeerAddressError(&'static str);

impl PeerAddress {
    pub(crate) fn from_endpoint(addr: &EndpointAddr) -> PeerAddress {
        PeerAddress { id: addr.id, sockets: addr.ip_addrs().copied().collect() }
    }

    pub(crate) fn endpoint_addr(&self) -> EndpointAddr {
        EndpointAddr::from_parts(self.id, self.sockets.iter().copied().map(TransportAddr::Ip))
    }

    /// The same peer at other socket addresses: for a coordinator that
    /// replaces the addresses a worker reports (which may be private) with
    /// the one it sees the worker's calls come from, keeping the port.
    pub fn with_sockets(&self, sockets: impl IntoIterator<Item = SocketAddr>) -> PeerAddress {
        PeerAddress { id: self.id, sockets: sockets.into_iter().collect() }
    }

    /// The socket addresses the peer listens on.
    pub fn sockets(&self) -> impl Iterator<Item = &SocketAddr> {
        self.sockets.iter()
    }

    /// The peer's key, in hex: the same peer keeps it across restarts (it
    /// is stored in the swarm's state directory).
    pub fn key(&self) -> String {
        hex::encode(self.id.as_bytes())
    }

    /// The text form, as bytes, for gRPC.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_string().into_bytes()
    }

    /// Parses [`PeerAddress::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<PeerAddress, ParsePeerAddressError> {
        std::str::from_utf8(bytes).map_err(|_| ParsePeerAddressError("not UTF-8"))?.parse()
    }
}

impl fmt::Display for PeerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@", self.key())?;
        for (i, socket) in self.sockets.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{socket}")?;
        }
        Ok(())
    }
}

impl FromStr for PeerAddress {
    type Err = ParsePeerAddressError;

    fn from_str(text: &str) -> Result<PeerAddress, ParsePeerAddressError> {
        let (key, sockets) = text.split_once('@').ok_or(ParsePeerAddressError("no @"))?;
        let mut key_bytes = [0u8; 32];
        hex::decode_to_slice(key, &mut key_bytes).map_err(|_| ParsePeerAddressError("bad key"))?;
        let id = EndpointId::from_bytes(&key_bytes).map_err(|_| ParsePeerAddressError("bad key"))?;
        let sockets = sockets
            .split(',')
            .map(|socket| socket.parse().map_err(|_| ParsePeerAddressError("bad socket address")))
            .collect::<Result<BTreeSet<SocketAddr>, _>>()?;
        Ok(PeerAddress { id, sockets })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> String {
        let secret = iroh::SecretKey::from_bytes(&[7; 32]);
        hex::encode(secret.public().as_bytes())
    }

    #[test]
    fn text_round_trips() {
        let text = format!("{}@127.0.0.1:4000,[::1]:4001", key());
        let address: PeerAddress = text.parse().unwrap();
        assert_eq!(address.to_string(), text);
        assert_eq!(PeerAddress::from_bytes(&address.to_bytes()).unwrap(), address);
    }

    #[test]
    fn bad_text_is_refused() {
        let check = |text: String, expected: &str| {
            let error = text.parse::<PeerAddress>().unwrap_err();
            assert_eq!(error.0, expected, "{text}");
        };
        check("127.0.0.1:4000".into(), "no @");
        check("zz@127.0.0.1:4000".into(), "bad key");
        check(format!("{}@", key()), "bad socket address");
        check(format!("{}@127.0.0.1", key()), "bad socket address");
    }
}
