//! Accepted connections: every socket the coordinator accepts (gRPC, the
//! status page, the metrics endpoint) has `TCP_NODELAY` set.
//!
//! Without it a small response (a gRPC reply is a few hundred bytes in two
//! or three writes) waits for the peer's delayed ACK under Nagle's
//! algorithm: about 40 ms per call on Linux loopback, measured on every
//! RPC of a worker (register, request work, report) before this module.
//! tonic sets the option only in its own `serve(addr)` path, and
//! `axum::serve` never does, so both listeners go through here.

use tokio::net::{TcpListener, TcpStream};
use tonic::transport::server::TcpIncoming;

/// The gRPC server's incoming connections on `listener`, each with
/// `TCP_NODELAY`.
pub fn grpc_incoming(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// An HTTP listener for `axum::serve` whose accepted connections have
/// `TCP_NODELAY`.
pub fn http_listener(listener: TcpListener) -> impl axum::serve::Listener<Io = TcpStream, Addr = std::net::SocketAddr> {
    use axum::serve::ListenerExt;
    listener.tap_io(|stream: &mut TcpStream| {
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY on an accepted connection");
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::serve::Listener;
    use tokio_stream::StreamExt;

    async fn bound() -> (TcpListener, std::net::SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        (listener, addr)
    }

    #[tokio::test]
    async fn grpc_connections_are_accepted_with_nodelay() {
        let (listener, addr) = bound().await;
        let mut incoming = grpc_incoming(listener);
        let _client = TcpStream::connect(addr).await.unwrap();
        let accepted = incoming.next().await.unwrap().unwrap();
        assert!(accepted.nodelay().unwrap());
    }

    #[tokio::test]
    async fn http_connections_are_accepted_with_nodelay() {
        let (listener, addr) = bound().await;
        let mut listener = http_listener(listener);
        let _client = TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = listener.accept().await;
        assert!(accepted.nodelay().unwrap());
    }

    #[tokio::test]
    async fn a_plain_accept_has_no_nodelay() {
        // The premise of this module: without it the option is off.
        let (listener, addr) = bound().await;
        let _client = TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        assert!(!accepted.nodelay().unwrap());
    }
}
