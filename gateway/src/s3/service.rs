//! The S3 service on one core: accept (SO_REUSEPORT, every core; connections spread
//! by count, `http::balance`), authenticate, route, run the handler, turn errors
//! into S3 XML in one place, log and count.
use std::cell::{Cell, RefCell};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use tessera_engine::runtime::CoreCx;

use super::error::{S3Error, S3ErrorCode};
use crate::http::{Body, ConnInfo, HttpConfig};
use crate::metrics::{GaugeLine, Metrics, MetricsSnapshot, RequestRecord};
use crate::server::Shared;
use crate::sigv4::{self, PayloadMode, SigV4Request};

/// One core's gateway.
pub struct Gateway {
    pub cx: Rc<CoreCx>,
    pub shared: Arc<Shared>,
    pub metrics: RefCell<Metrics>,
    /// A cluster gateway's backend; `None` in the embedded server.
    pub cluster: Option<Rc<super::cluster::ClusterCx>>,
    seq: Cell<u64>,
}

impl Gateway {
    pub fn core_of(&self, bucket: &str, key: &str) -> usize {
        self.shared.deployment.as_ref().map_or(self.cx.core, |d| d.core_of(bucket, key))
    }

    /// Whether `bucket` exists, from this core's copy of the catalogue (a cluster
    /// gateway asks etcd when its copy does not have it).
    pub async fn check_bucket(&self, bucket: &str) -> Result<(), S3Error> {
        if let Some(c) = &self.cluster {
            return c.check_bucket(bucket).await;
        }
        if self.cx.objects().bucket_exists(bucket) {
            Ok(())
        } else {
            Err(S3Error::no_such_bucket(bucket))
        }
    }

    /// Request ids: core in the top byte, a per-core sequence below; unique per process
    /// run, and the start time makes them unique across restarts in logs.
    fn next_request_id(&self) -> String {
        let n = self.seq.get() + 1;
        self.seq.set(n);
        format!("{:02X}{:014X}", self.cx.core, n)
    }
}

/// A request body: the client's, or (for copies) bytes read from another object.
pub enum RequestBody {
    Incoming(hyper::body::Incoming),
    Stream(Pin<Box<dyn http_body::Body<Data = Bytes, Error = std::io::Error>>>),
}

impl RequestBody {
    pub fn from_stream(b: impl http_body::Body<Data = Bytes, Error = std::io::Error> + 'static) -> Self {
        RequestBody::Stream(Box::pin(b))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RequestBodyError(String);

impl http_body::Body for RequestBody {
    type Data = Bytes;
    type Error = RequestBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, RequestBodyError>>> {
        match self.get_mut() {
            RequestBody::Incoming(b) => {
                Pin::new(b).poll_frame(cx).map(|o| o.map(|r| r.map_err(|e| RequestBodyError(e.to_string()))))
            }
            RequestBody::Stream(s) => {
                s.as_mut().poll_frame(cx).map(|o| o.map(|r| r.map_err(|e| RequestBodyError(e.to_string()))))
            }
        }
    }
}

/// An authenticated request on its way to a handler.
pub struct Req {
    pub parts: http::request::Parts,
    pub body: RequestBody,
    pub payload: PayloadMode,
    /// Decoded query parameters in order.
    pub query: Vec<(String, String)>,
    pub request_id: String,
}

impl Req {
    pub fn query(&self, name: &str) -> Option<String> {
        self.query.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone())
    }

    pub fn chunked_transfer(&self) -> bool {
        self.parts
            .headers
            .get(http::header::TRANSFER_ENCODING)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    }
}

/// A response being built.
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Body,
}

impl Resp {
    pub fn new(status: StatusCode) -> Resp {
        Resp { status, headers: HeaderMap::new(), body: Body::Empty }
    }

    pub fn xml(status: StatusCode, xml: String) -> Resp {
        let mut r = Resp::new(status);
        r.header("content-type", "application/xml");
        r.content_length(xml.len() as u64);
        r.body = Body::Full(Bytes::from(xml));
        r
    }

    /// Sets a header; values that are not valid header bytes are dropped (and
    /// logged) rather than failing the response.
    pub fn header(&mut self, name: &str, value: &str) {
        match (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
            (Ok(n), Ok(v)) => {
                self.headers.insert(n, v);
            }
            _ => tracing::warn!(name, "header not representable in HTTP; dropped"),
        }
    }

    pub fn content_length(&mut self, len: u64) {
        self.headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(len));
    }
}

/// Starts this core's S3 listener. Runs on the core.
pub fn start(
    cx: Rc<CoreCx>,
    shared: Arc<Shared>,
    cluster: Option<Rc<super::cluster::ClusterCx>>,
    balance: crate::http::CoreBalance,
) -> Result<(), String> {
    let listener = crate::http::bind(shared.address)
        .map_err(|e| format!("{e}: {}", std::error::Error::source(&e).map(|s| s.to_string()).unwrap_or_default()))?;
    let gw =
        Rc::new(Gateway { cx: cx.clone(), shared, metrics: RefCell::new(Metrics::new()), cluster, seq: Cell::new(0) });
    let guard = cx.service();
    CORE_GATEWAY.with(|g| *g.borrow_mut() = Some(Rc::downgrade(&gw)));
    let handler = {
        let gw = gw.clone();
        Rc::new(move |req: http::Request<hyper::body::Incoming>, conn: ConnInfo| {
            let gw = gw.clone();
            Box::pin(async move { handle(gw, req, conn).await }) as crate::http::HandlerFuture
        })
    };
    glommio::spawn_local(async move {
        let stopping = {
            let cx = cx.clone();
            async move { cx.stopping().await }
        };
        match crate::http::serve(listener, handler, HttpConfig::default(), Some(balance), stopping).await {
            Ok(rep) => tracing::info!(core = cx.core, ?rep, "S3 listener stopped"),
            Err(e) => tracing::error!(core = cx.core, error = %e, "S3 listener failed"),
        }
        drop(gw);
        drop(guard);
    })
    .detach();
    Ok(())
}

/// Splits a raw query into decoded pairs (`+` is a space in queries).
pub fn parse_query(raw: Option<&str>) -> Vec<(String, String)> {
    let Some(raw) = raw else { return vec![] };
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (n, v) = p.split_once('=').unwrap_or((p, ""));
            let dec =
                |s: &str| percent_encoding::percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned();
            (dec(n), dec(v))
        })
        .collect()
}

async fn handle(gw: Rc<Gateway>, req: http::Request<hyper::body::Incoming>, conn: ConnInfo) -> http::Response<Body> {
    let started = Instant::now();
    let request_id = gw.next_request_id();
    let method = req.method().clone();
    // The body's size as declared (decoded size for aws-chunked uploads).
    let declared =
        |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let bytes_received = declared("x-amz-decoded-content-length").or_else(|| declared("content-length")).unwrap_or(0);
    let has_body = declared("content-length").is_some_and(|n| n > 0)
        || req.headers().contains_key(http::header::TRANSFER_ENCODING);
    let path = req.uri().path().to_string();
    let (op, result) = match handle_inner(&gw, req, &request_id).await {
        Ok((op, r)) => (op, Ok(r)),
        Err((op, e)) => (op, Err(e)),
    };
    let (mut resp, error_code) = match result {
        Ok(r) => (r, None),
        Err(e) => {
            if e.status().is_server_error() {
                tracing::warn!(request_id, op, code = e.code.as_str(), message = %e.message, "request failed");
            }
            let r = if e.has_body() && method != http::Method::HEAD {
                Resp::xml(e.status(), e.to_xml(&request_id))
            } else {
                Resp::new(e.status())
            };
            (r, Some(e.code.as_str()))
        }
    };
    if has_body && error_code.is_some() {
        // The body may be unread (refused on its headers): the connection cannot be
        // reused, and saying so keeps clients from sending their next request into
        // a connection that is closing.
        resp.header("connection", "close");
    }
    resp.header("x-amz-request-id", &request_id);
    resp.header("x-amz-id-2", &request_id);
    resp.header("server", "Tessera");
    let status = resp.status.as_u16();
    let bytes_sent = if method == http::Method::HEAD {
        0
    } else {
        resp.headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let duration_us = started.elapsed().as_micros() as u64;
    gw.metrics.borrow().record(&RequestRecord {
        op,
        status,
        error_code,
        bytes_received,
        bytes_sent,
        // Measured to the response head: for a streamed GET that is its time to
        // first byte; the body's own transfer time is the client's to see.
        duration_us,
        ttfb_us: (method == http::Method::GET).then_some(duration_us),
    });
    tracing::info!(target: "tessera::access", request_id, op, %method, path, status, bytes_sent, duration_us, peer = %conn.peer_addr);
    let mut out = http::Response::new(resp.body);
    *out.status_mut() = resp.status;
    *out.headers_mut() = resp.headers;
    out
}

type Outcome = Result<(&'static str, Resp), (&'static str, S3Error)>;

async fn handle_inner(gw: &Rc<Gateway>, req: http::Request<hyper::body::Incoming>, request_id: &str) -> Outcome {
    let (parts, body) = req.into_parts();
    let raw_query = parts.uri.query().map(str::to_string);
    let raw_path = parts.uri.path().to_string();
    // Health endpoints answer without authentication.
    if parts.method == http::Method::GET && raw_query.is_none() {
        match raw_path.as_str() {
            "/health" => return Ok(("Health", text(StatusCode::OK, "ok\n"))),
            "/ready" => {
                return Ok(if gw.shared.ready.load(Ordering::Acquire) {
                    ("Ready", text(StatusCode::OK, "ready\n"))
                } else {
                    ("Ready", text(StatusCode::SERVICE_UNAVAILABLE, "starting or stopping\n"))
                })
            }
            "/metrics" => return metrics(gw).await.map(|r| ("Metrics", r)).map_err(|e| ("Metrics", e)),
            _ => {}
        }
    }
    let creds = &gw.shared.credentials;
    let auth = sigv4::authenticate(
        &SigV4Request {
            method: &parts.method,
            raw_path: &raw_path,
            raw_query: raw_query.as_deref(),
            headers: &parts.headers,
        },
        |ak| (ak == creds.access_key).then(|| creds.secret_key.clone()),
        SystemTime::now(),
    );
    let payload = match auth {
        Ok(Some(a)) => a.payload,
        Ok(None) => {
            // A bucket that does not exist is NoSuchBucket for everyone, as in S3.
            let query = parse_query(raw_query.as_deref());
            let vhost = gw.shared.vhost_domain.as_deref();
            if let Ok(ep) = super::dispatch::route(&parts.method, &raw_path, &query, &parts.headers, vhost) {
                if let Some(b) = ep.bucket() {
                    let creating = matches!(ep, super::dispatch::Endpoint::CreateBucket { .. });
                    let known = match &gw.cluster {
                        Some(c) => c.bucket_known(b),
                        None => gw.cx.objects().bucket_exists(b),
                    };
                    if !creating && !known {
                        return Err(("Anonymous", S3Error::no_such_bucket(b)));
                    }
                }
            }
            return Err((
                "Anonymous",
                S3Error::new(S3ErrorCode::AccessDenied)
                    .with_message("Anonymous access is not allowed; sign requests with AWS Signature Version 4."),
            ));
        }
        Err(e) => return Err(("Unauthenticated", S3Error::from(e))),
    };
    let query = parse_query(raw_query.as_deref());
    let endpoint = match super::dispatch::route(
        &parts.method,
        &raw_path,
        &query,
        &parts.headers,
        gw.shared.vhost_domain.as_deref(),
    ) {
        Ok(e) => e,
        Err(e) => return Err(("Unrouted", e)),
    };
    if gw.cluster.is_some() && !gw.shared.ready.load(Ordering::Acquire) {
        // The start-up barrier: no S3 request before the cluster can serve it.
        return Err((
            endpoint.name(),
            S3Error::new(S3ErrorCode::ServiceUnavailable)
                .with_message("the cluster is not ready yet (placement or live nodes missing)"),
        ));
    }
    let req = Req { parts, body: RequestBody::Incoming(body), payload, query, request_id: request_id.to_string() };
    super::dispatch::dispatch(gw, endpoint, req).await
}

fn text(status: StatusCode, s: &'static str) -> Resp {
    let mut r = Resp::new(status);
    r.header("content-type", "text/plain");
    r.content_length(s.len() as u64);
    r.body = Body::Full(Bytes::from_static(s.as_bytes()));
    r
}

/// Prometheus text: request metrics merged over every core, drive and store state.
async fn metrics(gw: &Rc<Gateway>) -> Result<Resp, S3Error> {
    let mut snap = MetricsSnapshot::default();
    let mut gauges = Vec::new();
    // A cluster gateway has no drives or objects of its own: requests only.
    let storage_cores = if gw.cluster.is_some() { 0 } else { gw.cx.handle.cores() };
    for core in storage_cores..gw.cx.handle.cores() {
        let s = gw
            .cx
            .run_on(core, |cx| async move { crate::s3::service::core_metrics(&cx) })
            .await
            .map_err(|e| S3Error::new(S3ErrorCode::ServiceUnavailable).with_message(e.to_string()))?;
        snap.merge(&s);
    }
    for core in 0..storage_cores {
        let (s, drives, stats) = gw
            .cx
            .run_on(core, |cx| async move {
                let snap = crate::s3::service::core_metrics(&cx);
                let o = cx.objects();
                (snap, o.drive_states(), o.stats())
            })
            .await
            .map_err(|e| S3Error::new(S3ErrorCode::ServiceUnavailable).with_message(e.to_string()))?;
        snap.merge(&s);
        for d in drives {
            gauges.push(
                GaugeLine::new(
                    "tessera_drive_online",
                    "1 when the core uses the drive, 0 when it is offline",
                    if d.online { 1.0 } else { 0.0 },
                )
                .label("core", core.to_string())
                .label("drive", d.drive.to_string()),
            );
        }
        gauges.push(
            GaugeLine::new("tessera_objects", "Objects indexed on the core", stats.objects as f64)
                .label("core", core.to_string()),
        );
        gauges.push(
            GaugeLine::new(
                "tessera_degraded_reads_total",
                "Stripe reads that needed reconstruction",
                stats.degraded_reads as f64,
            )
            .label("core", core.to_string()),
        );
        for (name, help, v) in [
            ("tessera_cache_hits_total", "Reads served from the core's read cache", stats.cache.hits),
            ("tessera_cache_misses_total", "Reads the core's read cache could not serve", stats.cache.misses),
            ("tessera_cache_bytes", "Bytes held by the core's read cache", stats.cache.bytes),
            ("tessera_cache_capacity_bytes", "Size of the core's read cache", stats.cache.capacity),
        ] {
            gauges.push(GaugeLine::new(name, help, v as f64).label("core", core.to_string()));
        }
        gauges.push(
            GaugeLine::new(
                "tessera_pieces_failed_total",
                "Piece reads or writes that failed",
                stats.pieces_failed as f64,
            )
            .label("core", core.to_string()),
        );
    }
    let body = snap.render_prometheus(&gauges);
    let mut r = Resp::new(StatusCode::OK);
    r.header("content-type", crate::metrics::PROMETHEUS_CONTENT_TYPE);
    r.content_length(body.len() as u64);
    r.body = Body::Full(Bytes::from(body));
    Ok(r)
}

thread_local! {
    /// The gateway of the core this thread runs (one executor per thread), for
    /// the metrics gathering that arrives as a closure.
    static CORE_GATEWAY: RefCell<Option<std::rc::Weak<Gateway>>> = const { RefCell::new(None) };
}

pub fn core_metrics(_cx: &Rc<CoreCx>) -> MetricsSnapshot {
    CORE_GATEWAY.with(|g| {
        g.borrow().as_ref().and_then(|w| w.upgrade()).map(|gw| gw.metrics.borrow().snapshot()).unwrap_or_default()
    })
}
