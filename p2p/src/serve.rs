//! What a serving swarm answers, applied in iroh-blobs' provider hooks: a
//! request is refused unless every blob it names was seeded (a fetched or
//! half-fetched file is not served until the caller seeds it), pushes are
//! refused, and each chunk sent first waits for the upload cap and is
//! counted. A swarm that serves each segment once (the coordinator's seed,
//! BitTorrent's "super-seeding") declines, as rate-limited, a request for a
//! segment it sent to anyone within the window: the asker waits for the
//! peers to pass it on, and asks again later.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use iroh_blobs::Hash;
use iroh_blobs::provider::events::{
    AbortReason, ConnectMode, EventMask, EventSender, ObserveMode, ProviderMessage, RequestMode, ThrottleMode,
};

use crate::rate::UploadCap;

/// The state the provider hooks read, shared with the `Swarm`.
#[derive(Debug, Default)]
pub(crate) struct ServePolicy {
    /// The blobs seeded: the only ones served.
    seeded: Mutex<HashSet<Hash>>,
    /// The upload cap, if any (shared with the party's other senders).
    cap: Option<UploadCap>,
    /// Payload bytes granted to peers (16 KiB chunks, before they are sent).
    uploaded_bytes: AtomicU64,
    /// With serve-once: the window, and when each (file, segment) was last sent.
    serve_once: Option<(std::time::Duration, Mutex<SentAt>)>,
}

/// When each (file, segment) was last sent.
type SentAt = HashMap<(Hash, u64), Instant>;

/// Segments as `fetch` asks for them: 1,024 BLAKE3 chunks of 1 KiB.
const SEGMENT_CHUNKS: u64 = 1024;

impl ServePolicy {
    pub(crate) fn new(cap: Option<UploadCap>, serve_once: Option<std::time::Duration>) -> ServePolicy {
        let serve_once = serve_once.map(|window| (window, Mutex::new(HashMap::new())));
        ServePolicy { cap, serve_once, ..ServePolicy::default() }
    }

    /// With serve-once, whether segment `segment` of `hash` may be sent now
    /// (not sent to anyone within the window), recording it if so.
    fn once(&self, hash: Hash, segment: u64, now: Instant) -> Result<(), AbortReason> {
        let Some((window, sent)) = &self.serve_once else { return Ok(()) };
        let mut sent = sent.lock().expect("no panic while holding the map");
        if sent.get(&(hash, segment)).is_some_and(|at| now.duration_since(*at) < *window) {
            return Err(AbortReason::RateLimited);
        }
        if sent.len() >= 4096 {
            sent.retain(|_, at| now.duration_since(*at) < *window);
        }
        sent.insert((hash, segment), now);
        Ok(())
    }

    pub(crate) fn seed(&self, hash: Hash) {
        self.seeded.lock().expect("no panic while holding the set").insert(hash);
    }

    pub(crate) fn unseed(&self, hash: &Hash) {
        self.seeded.lock().expect("no panic while holding the set").remove(hash);
    }

    pub(crate) fn is_seeded(&self, hash: &Hash) -> bool {
        self.seeded.lock().expect("no panic while holding the set").contains(hash)
    }

    pub(crate) fn upload_limit(&self) -> Option<u64> {
        self.cap.as_ref().map(UploadCap::bytes_per_sec)
    }

    pub(crate) fn uploaded_bytes(&self) -> u64 {
        self.uploaded_bytes.load(Ordering::Relaxed)
    }

    fn grant(&self, bytes: u64) -> std::time::Duration {
        self.uploaded_bytes.fetch_add(bytes, Ordering::Relaxed);
        match &self.cap {
            Some(cap) => cap.grant(bytes),
            None => std::time::Duration::ZERO,
        }
    }

    fn allow(&self, hashes: impl IntoIterator<Item = Hash>) -> Result<(), AbortReason> {
        let seeded = self.seeded.lock().expect("no panic while holding the set");
        let mut hashes = hashes.into_iter().peekable();
        if hashes.peek().is_none() {
            return Err(AbortReason::Permission);
        }
        if hashes.all(|hash| seeded.contains(&hash)) { Ok(()) } else { Err(AbortReason::Permission) }
    }
}

/// The hooks' mask: requests intercepted (to refuse what is not seeded),
/// pushes disabled, every chunk throttled (the cap and the byte count).
const MASK: EventMask = EventMask {
    connected: ConnectMode::None,
    get: RequestMode::Intercept,
    get_many: RequestMode::Intercept,
    push: RequestMode::Disabled,
    observe: ObserveMode::Intercept,
    throttle: ThrottleMode::Intercept,
};

/// Starts the task answering the provider's hooks and returns the sender
/// iroh-blobs calls them through. The task ends when the provider is
/// dropped (the channel closes).
pub(crate) fn spawn_hooks(policy: Arc<ServePolicy>) -> EventSender {
    let (sender, mut messages) = EventSender::channel(64, MASK);
    tokio::spawn(async move {
        while let Some(message) = messages.recv().await {
            match message {
                ProviderMessage::GetRequestReceived(message) => {
                    let request = &message.inner.request;
                    let mut verdict = policy.allow([request.hash]);
                    if verdict.is_err() {
                        tracing::debug!(hash = %request.hash, "refused a request for a file not seeded");
                    } else if let Some(first) =
                        request.ranges.iter_infinite().next().and_then(|r| r.boundaries().first())
                    {
                        verdict = policy.once(request.hash, first.0 / SEGMENT_CHUNKS, Instant::now());
                    }
                    message.tx.send(verdict).await.ok();
                }
                ProviderMessage::GetManyRequestReceived(message) => {
                    let verdict = policy.allow(message.inner.request.hashes.iter().copied());
                    message.tx.send(verdict).await.ok();
                }
                ProviderMessage::ObserveRequestReceived(message) => {
                    let verdict = policy.allow([message.inner.request.hash]);
                    message.tx.send(verdict).await.ok();
                }
                ProviderMessage::PushRequestReceived(message) => {
                    message.tx.send(Err(AbortReason::Permission)).await.ok();
                }
                ProviderMessage::Throttle(message) => {
                    let wait = policy.grant(message.inner.size);
                    if wait.is_zero() {
                        message.tx.send(Ok(())).await.ok();
                    } else {
                        tokio::spawn(async move {
                            tokio::time::sleep(wait).await;
                            message.tx.send(Ok(())).await.ok();
                        });
                    }
                }
                // Notifications only: the mask asks for none of them, and
                // they need no answer.
                ProviderMessage::ClientConnected(message) => {
                    message.tx.send(Ok(())).await.ok();
                }
                ProviderMessage::ClientConnectedNotify(_)
                | ProviderMessage::ConnectionClosed(_)
                | ProviderMessage::GetRequestReceivedNotify(_)
                | ProviderMessage::GetManyRequestReceivedNotify(_)
                | ProviderMessage::PushRequestReceivedNotify(_)
                | ProviderMessage::ObserveRequestReceivedNotify(_) => {}
            }
        }
    });
    sender
}
