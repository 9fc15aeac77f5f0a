//! Every gRPC call timed by method and status code: a tower layer around
//! tonic's routes ([`RpcLayer`]) that starts a clock when a request arrives
//! and stops it when the response has been sent to its end: its trailers
//! (`grpc-status` of a call that sent messages, also of a long stream) or
//! its headers (a trailers-only error, complete with them). A response
//! dropped before its end (the client went away) counts as CANCELLED.
//!
//! Label values come only from routes that exist: a path tonic answers with
//! UNIMPLEMENTED (no such service or method) is counted as
//! `service="unknown", method="unknown"`, so a client cannot grow the
//! series without bound by inventing paths.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::http::{HeaderMap, Request, Response};
use http_body::{Body, Frame, SizeHint};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

/// The labels of `quorum_rpc_duration_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabels {
    /// `quorum.v1.Scheduler`, `grpc.health.v1.Health`...
    pub service: String,
    /// `RequestWork`...
    pub method: String,
    /// The gRPC status code's name: `OK`, `InvalidArgument`...
    pub code: String,
}

/// The histogram family the layer records into.
pub type RpcDurations = Family<RpcLabels, Histogram, fn() -> Histogram>;

/// Latency buckets: 0.5 ms to about 16 s, doubling.
pub fn rpc_durations() -> RpcDurations {
    Family::new_with_constructor(|| {
        Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.000_5, 2.0, 16))
    })
}

/// The layer, given to `tonic::transport::Server::layer`.
#[derive(Clone)]
pub struct RpcLayer {
    durations: RpcDurations,
}

impl RpcLayer {
    pub fn new(durations: RpcDurations) -> RpcLayer {
        RpcLayer { durations }
    }
}

impl<S> tower::Layer<S> for RpcLayer {
    type Service = RpcService<S>;

    fn layer(&self, inner: S) -> RpcService<S> {
        RpcService { inner, durations: self.durations.clone() }
    }
}

/// tonic's routes, timed.
#[derive(Clone)]
pub struct RpcService<S> {
    inner: S,
    durations: RpcDurations,
}

impl<S, B, ResBody> tower::Service<Request<B>> for RpcService<S>
where
    S: tower::Service<Request<B>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Body + Unpin,
{
    type Response = Response<TimedBody<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let timing = Timing {
            durations: self.durations.clone(),
            path: request.uri().path().to_owned(),
            started: Instant::now(),
            done: false,
        };
        let response = self.inner.call(request);
        Box::pin(async move {
            let mut timing = timing;
            match response.await {
                Ok(response) => {
                    // A trailers-only answer (an error) is complete with its headers.
                    if let Some(code) = grpc_status(response.headers()) {
                        timing.finish(code);
                    }
                    let (parts, body) = response.into_parts();
                    Ok(Response::from_parts(parts, TimedBody { inner: body, timing }))
                }
                Err(error) => {
                    timing.finish(tonic::Code::Unknown);
                    Err(error)
                }
            }
        })
    }
}

/// A call's clock, stopped once.
struct Timing {
    durations: RpcDurations,
    path: String,
    started: Instant,
    done: bool,
}

impl Timing {
    fn finish(&mut self, code: tonic::Code) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let (service, method) = match (code, split_path(&self.path)) {
            (tonic::Code::Unimplemented, _) | (_, None) => ("unknown", "unknown"),
            (_, Some(parts)) => parts,
        };
        let labels = RpcLabels { service: service.to_owned(), method: method.to_owned(), code: code_name(code) };
        self.durations.get_or_create(&labels).observe(self.started.elapsed().as_secs_f64());
    }
}

impl Drop for Timing {
    fn drop(&mut self) {
        // Ended before its trailers: the client went away, or the server closed it.
        self.finish(tonic::Code::Cancelled);
    }
}

/// A response body that stops the call's clock at its end.
pub struct TimedBody<B> {
    inner: B,
    timing: Timing,
}

impl<B: Body + Unpin> Body for TimedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    let code = grpc_status(trailers).unwrap_or(tonic::Code::Unknown);
                    this.timing.finish(code);
                }
            }
            Poll::Ready(Some(Err(_))) => this.timing.finish(tonic::Code::Internal),
            // Ended without trailers (a trailers-only answer was timed at its headers).
            Poll::Ready(None) => this.timing.finish(tonic::Code::Unknown),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The `grpc-status` entry of headers or trailers.
fn grpc_status(headers: &HeaderMap) -> Option<tonic::Code> {
    let value = headers.get("grpc-status")?.to_str().ok()?.parse::<i32>().ok()?;
    Some(tonic::Code::from_i32(value))
}

/// `/quorum.v1.Scheduler/RequestWork` → (`quorum.v1.Scheduler`, `RequestWork`).
fn split_path(path: &str) -> Option<(&str, &str)> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    (!service.is_empty() && !method.is_empty() && !method.contains('/')).then_some((service, method))
}

/// The name Prometheus exporters of gRPC use for a code (`OK`, `InvalidArgument`...).
fn code_name(code: tonic::Code) -> String {
    match code {
        tonic::Code::Ok => "OK".to_owned(),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_service_and_method() {
        assert_eq!(split_path("/quorum.v1.Scheduler/RequestWork"), Some(("quorum.v1.Scheduler", "RequestWork")));
        assert_eq!(split_path("/grpc.health.v1.Health/Check"), Some(("grpc.health.v1.Health", "Check")));
        assert_eq!(split_path("/"), None);
        assert_eq!(split_path("/a"), None);
        assert_eq!(split_path("/a/"), None);
        assert_eq!(split_path("/a/b/c"), None);
        assert_eq!(split_path("a/b"), None);
    }

    #[test]
    fn codes_are_named_as_grpc_exporters_name_them() {
        assert_eq!(code_name(tonic::Code::Ok), "OK");
        assert_eq!(code_name(tonic::Code::InvalidArgument), "InvalidArgument");
        assert_eq!(code_name(tonic::Code::ResourceExhausted), "ResourceExhausted");
    }

    #[test]
    fn an_unimplemented_path_is_not_a_label() {
        let durations = rpc_durations();
        let mut timing = Timing {
            durations: durations.clone(),
            path: "/made.up.Service/Anything".to_owned(),
            started: Instant::now(),
            done: false,
        };
        timing.finish(tonic::Code::Unimplemented);
        drop(timing);
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register("rpc_duration_seconds", "calls", durations);
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).expect("encodes");
        let counts: Vec<&str> = text.lines().filter(|line| line.starts_with("rpc_duration_seconds_count")).collect();
        assert_eq!(
            counts,
            ["rpc_duration_seconds_count{service=\"unknown\",method=\"unknown\",code=\"Unimplemented\"} 1"],
            "counted once, not again on drop, and not under its path:\n{text}"
        );
    }
}
