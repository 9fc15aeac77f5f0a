//! A peer that lies: it speaks iroh-blobs on its ALPN, claims to hold the
//! whole file when asked what it holds, and sends, for any request, the
//! true file's tree (so the header and the hashes look right)
//! with every byte of data inverted. iroh-blobs' own provider cannot be made
//! to do this (it checks what it sends against the tree), so the liar is
//! written here, on iroh's router and iroh-blobs' wire format.
//!
//! Shared by the p2p crate's tests and the end-to-end tests (where it lies
//! to real worker processes), included by path in both.

use iroh::endpoint::{Connection, presets};
use iroh::protocol::{AcceptError, ProtocolHandler, Router};
use iroh::{Endpoint, RelayMode};
use iroh_blobs::api::blobs::EncodedItem;
use iroh_blobs::protocol::{ChunkRanges, ObserveItem, Request};
use iroh_blobs::store::mem::MemStore;
use quorum_p2p::PeerAddress;
use tokio_stream::StreamExt as _;

#[derive(Debug, Clone)]
struct Liar {
    store: MemStore,
    size: u64,
}

impl ProtocolHandler for Liar {
    async fn accept(&self, connection: Connection) -> Result<(), AcceptError> {
        while let Ok((mut send, mut recv)) = connection.accept_bi().await {
            let (store, size) = (self.store.clone(), self.size);
            tokio::spawn(async move {
                let request = match Request::read_async(&mut recv).await {
                    Ok((Request::Get(request), _)) => request,
                    Ok((Request::Observe(request), _)) => {
                        // It claims to hold the whole file, as a liar would.
                        let _ = request;
                        let item = ObserveItem { size, ranges: ChunkRanges::all() };
                        let body = postcard::to_stdvec(&item).unwrap();
                        let mut message = Vec::new();
                        let mut length = body.len() as u64;
                        loop {
                            let byte = (length & 0x7f) as u8;
                            length >>= 7;
                            if length == 0 {
                                message.push(byte);
                                break;
                            }
                            message.push(byte | 0x80);
                        }
                        message.extend_from_slice(&body);
                        if send.write_all(&message).await.is_ok() {
                            // Keep the stream open, as an honest peer does.
                            let _ = send.stopped().await;
                        }
                        return;
                    }
                    _ => return,
                };
                let ranges = request.ranges.iter_infinite().next().cloned().unwrap_or_default();
                let mut items = std::pin::pin!(store.export_bao(request.hash, ranges).stream());
                while let Some(item) = items.next().await {
                    let bytes: Vec<u8> = match item {
                        EncodedItem::Size(size) => size.to_le_bytes().to_vec(),
                        EncodedItem::Parent(parent) => {
                            [parent.pair.0.as_bytes().as_slice(), parent.pair.1.as_bytes()].concat()
                        }
                        EncodedItem::Leaf(leaf) => leaf.data.iter().map(|byte| byte ^ 0xff).collect(),
                        EncodedItem::Done | EncodedItem::Error(_) => break,
                    };
                    if send.write_all(&bytes).await.is_err() {
                        return;
                    }
                }
                send.finish().ok();
            });
        }
        Ok(())
    }
}

/// Starts a liar holding `bytes`; dropping the router stops it.
pub async fn start(bytes: Vec<u8>) -> (Router, PeerAddress) {
    let endpoint = Endpoint::builder(presets::Minimal)
        .relay_mode(RelayMode::Disabled)
        .clear_address_lookup()
        .clear_ip_transports()
        .bind_addr("127.0.0.1:0")
        .unwrap()
        .bind()
        .await
        .unwrap();
    let store = MemStore::new();
    let size = bytes.len() as u64;
    store.add_bytes(bytes).with_tag().await.unwrap();
    let socket = endpoint.bound_sockets()[0];
    let address = format!("{}@{socket}", hex::encode(endpoint.id().as_bytes())).parse().unwrap();
    let router = Router::builder(endpoint).accept(iroh_blobs::ALPN, Liar { store, size }).spawn();
    (router, address)
}
