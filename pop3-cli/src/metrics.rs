//! `--metrics-listen ADDR`: the Prometheus metrics ([`crate::observe::Metrics`]) over plain
//! HTTP, `GET /metrics`, in the text exposition format (OpenMetrics text, which Prometheus
//! asks for and reads).
//!
//! Why hyper rather than a few lines of our own: the endpoint faces whatever can reach the
//! address, and HTTP/1.1 done right (partial and pipelined requests, header size limits,
//! keep-alive, a client that trickles its headers) is hyper's job; with only its `http1` and
//! `server` features, plus the tokio glue of `hyper-util` and `http-body-util`'s `Full`
//! body, it adds a handful of small crates that the Rust HTTP stack shares, and no HTTP/2,
//! client or TLS. A full web framework (axum and its router, tower) would be bloat for one
//! route.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

/// The content type of the OpenMetrics text format.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Most scrapes served at once: more wait in the kernel's queue.
const MAX_CONNECTIONS: usize = 16;

/// How long a client may take to send a request's head (and may stay idle between requests).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `registry` on `listener` until `stop` turns true.
pub(crate) async fn serve(
    listener: TcpListener,
    registry: Arc<Registry>,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => return,
        };
        let Ok((tcp, _)) = accepted else {
            // Out of descriptors and the like: pause, keep serving.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let registry = registry.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let registry = registry.clone();
                async move { Ok::<_, Infallible>(respond(&req, &registry)) }
            });
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(16 * 1024);
            let _ = http.serve_connection(TokioIo::new(tcp), service).await;
            drop(slot);
        });
    }
}

/// The answer to one request: the metrics for `GET /metrics`, 404 or 405 otherwise.
fn respond(req: &Request<Incoming>, registry: &Registry) -> Response<Full<Bytes>> {
    let response = |status: StatusCode, body: &'static str| {
        let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
        *r.status_mut() = status;
        r
    };
    if req.uri().path() != "/metrics" {
        return response(
            StatusCode::NOT_FOUND,
            "not found: the metrics are at /metrics\n",
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = response(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
        r.headers_mut()
            .insert(ALLOW, hyper::header::HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let mut text = String::new();
    if prometheus_client::encoding::text::encode(&mut text, registry).is_err() {
        return response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encode the metrics\n",
        );
    }
    let mut r = Response::new(Full::new(Bytes::from(text)));
    r.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(OPENMETRICS),
    );
    r
}
