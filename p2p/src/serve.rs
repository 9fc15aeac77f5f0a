//! What a serving swarm answers, applied in iroh-blobs' provider hooks: a
//! request is refused unless every blob it names was seeded (a fetched or
//! half-fetched file is not served until the caller seeds it), pushes are
//! refused, and each chunk sent first waits for the upload cap and is
//! counted.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use iroh_blobs::Hash;
use iroh_blobs::provider::events::{
    AbortReason, ConnectMode, EventMask, EventSender, ObserveMode, ProviderMessage, RequestMode, ThrottleMode,
};

use crate::rate::UploadLimiter;

/// The state the provider hooks read, shared with the `Swarm`.
#[derive(Debug, Default)]
pub(crate) struct ServePolicy {
    /// The blobs seeded: the only ones served.
    seeded: Mutex<HashSet<Hash>>,
    /// The upload cap, if any. The lock is held only to compute a wait,
    /// never across an `.await`.
    limiter: Option<Mutex<UploadLimiter>>,
    /// Payload bytes granted to peers (16 KiB chunks, before they are sent).
    uploaded_bytes: AtomicU64,
}

impl ServePolicy {
    pub(crate) fn new(upload_limit_bytes_per_sec: Option<u64>) -> ServePolicy {
        ServePolicy {
            limiter: upload_limit_bytes_per_sec.map(|rate| Mutex::new(UploadLimiter::new(rate))),
            ..ServePolicy::default()
        }
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
        self.limiter.as_ref().map(|limiter| limiter.lock().expect("no panic while holding the limiter").bytes_per_sec())
    }

    pub(crate) fn uploaded_bytes(&self) -> u64 {
        self.uploaded_bytes.load(Ordering::Relaxed)
    }

    fn grant(&self, bytes: u64) -> std::time::Duration {
        self.uploaded_bytes.fetch_add(bytes, Ordering::Relaxed);
        match &self.limiter {
            Some(limiter) => limiter.lock().expect("no panic while holding the limiter").grant(Instant::now(), bytes),
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
                    let verdict = policy.allow([message.inner.request.hash]);
                    if verdict.is_err() {
                        tracing::debug!(hash = %message.inner.request.hash, "refused a request for a file not seeded");
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
