//! The ingest port as a tower service. Checks run cheapest first, so floods and bad senders
//! cost as little as possible: endpoint, method, content type, rate limits, size, in-flight
//! bound, signature, replay, then CEL and the durable write.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use serde_json::{Map, Value, json};
use tokio::sync::Semaphore;
use zen_apiserver::status::ApiError;
use zen_serving::{Body, full};

use crate::{
    endpoint::{Endpoint, Endpoints},
    limit::TokenBucket,
    metrics::IngestMetrics,
    pipeline::Outcome,
    replay::{
        Seen,
        shared::{self, Claim},
    },
    signature::{Rejection, Scheme, Verifier},
    sink::{ApiSink, Recorded, SinkError},
};

/// Bounds of the whole port, beyond each endpoint's own.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Deliveries processed at once; beyond it senders get 503 and retry.
    pub in_flight: usize,
    /// Deliveries per second the whole port takes (every endpoint together).
    pub rate: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            in_flight: 256,
            rate: 10_000,
        }
    }
}

/// Headers never handed to CEL (and so never stored): credentials.
const HIDDEN_HEADERS: [&str; 3] = ["authorization", "cookie", "x-gitlab-token"];

#[derive(Clone)]
pub struct IngestService {
    inner: Arc<Inner>,
}

struct Inner {
    endpoints: Arc<Endpoints>,
    sink: ApiSink,
    metrics: Option<IngestMetrics>,
    in_flight: Arc<Semaphore>,
    global: TokenBucket,
}

/// Who delivers: an external sender (signature and replay checks) or an API client the
/// aggregated API authenticated.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Caller {
    Sender,
    Api,
}

/// The namespace and name a `webhookendpoints/{name}/ingest` API path addresses.
pub fn subresource_target(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("/apis/zen.watcher.io/v1alpha1/namespaces/")?;
    let mut parts = rest.split('/');
    match (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) {
        (Some(ns), Some("webhookendpoints"), Some(name), Some("ingest"), None)
            if !ns.is_empty() && !name.is_empty() =>
        {
            Some((ns, name))
        }
        _ => None,
    }
}

/// An answer and, for refusals, the reason counted.
struct Answer {
    status: StatusCode,
    body: Value,
    retry_after: Option<Duration>,
    reason: Option<&'static str>,
}

impl Answer {
    fn ok(status: StatusCode, body: Value) -> Self {
        Self {
            status,
            body,
            retry_after: None,
            reason: None,
        }
    }

    fn refuse(status: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: json!({"reason": reason, "message": message.into()}),
            retry_after: None,
            reason: Some(reason),
        }
    }

    fn retry_after(mut self, wait: Duration) -> Self {
        self.retry_after = Some(wait);
        self
    }
}

impl IngestService {
    pub fn new(endpoints: Arc<Endpoints>, sink: ApiSink, metrics: Option<IngestMetrics>) -> Self {
        Self::with_limits(endpoints, sink, metrics, Limits::default())
    }

    pub fn with_limits(
        endpoints: Arc<Endpoints>,
        sink: ApiSink,
        metrics: Option<IngestMetrics>,
        limits: Limits,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                endpoints,
                sink,
                metrics,
                in_flight: Arc::new(Semaphore::new(limits.in_flight)),
                global: TokenBucket::new(limits.rate, limits.rate),
            }),
        }
    }

    pub async fn handle<B>(&self, req: Request<B>) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<zen_serving::BoxError>,
    {
        if req.uri().path() == "/healthz" {
            return respond(Answer::ok(StatusCode::OK, json!({"status": "ok"})));
        }
        let Some(endpoint) = self.inner.endpoints.get(req.uri().path()) else {
            return respond(Answer::refuse(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no webhook endpoint at {}", req.uri().path()),
            ));
        };
        let answer = self.deliver(&endpoint, req, Caller::Sender).await;
        self.account(&endpoint, &answer);
        respond(answer)
    }

    /// `POST .../namespaces/{ns}/webhookendpoints/{name}/ingest`: a delivery from an
    /// in-cluster caller the API already authenticated (and, in a cluster, authorized for
    /// `create` on `webhookendpoints/ingest`), so no signature is asked for. Answers are
    /// `metav1.Status` errors, as everywhere on the API.
    pub async fn handle_subresource<B>(
        &self,
        namespace: &str,
        name: &str,
        req: Request<B>,
    ) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<zen_serving::BoxError>,
    {
        let Some(endpoint) = self.inner.endpoints.find(namespace, name) else {
            return ApiError::NotFound {
                resource: "webhookendpoints".into(),
                name: name.into(),
            }
            .into_response();
        };
        let answer = self.deliver(&endpoint, req, Caller::Api).await;
        self.account(&endpoint, &answer);
        if answer.status.is_success() {
            return respond(answer);
        }
        let message = answer.body["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let error = match answer.status {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::RequestEntityTooLarge(message),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType(message),
            StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed(message),
            StatusCode::TOO_MANY_REQUESTS => ApiError::TooManyRequests {
                message,
                retry_after_seconds: answer
                    .retry_after
                    .map_or(1, |d| u32::try_from(d.as_secs().max(1)).unwrap_or(1)),
            },
            StatusCode::UNPROCESSABLE_ENTITY | StatusCode::BAD_REQUEST => {
                ApiError::BadRequest(message)
            }
            StatusCode::SERVICE_UNAVAILABLE => ApiError::Unavailable(message),
            _ => ApiError::Internal(message),
        };
        error.into_response()
    }

    fn account(&self, endpoint: &Endpoint, answer: &Answer) {
        endpoint
            .counters
            .record(answer.status.as_u16(), answer.reason);
        if let Some(m) = &self.inner.metrics {
            m.answered(endpoint.labels(), answer.status.as_u16());
            if let Some(reason) = answer.reason {
                m.rejected(endpoint.labels(), reason);
            }
        }
        if answer.status.is_server_error() || answer.status == StatusCode::UNPROCESSABLE_ENTITY {
            tracing::warn!(
                path = %endpoint.path,
                code = answer.status.as_u16(),
                message = answer.body["message"].as_str().unwrap_or(""),
                "delivery not stored"
            );
        }
    }

    async fn deliver<B>(&self, endpoint: &Endpoint, req: Request<B>, caller: Caller) -> Answer
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<zen_serving::BoxError>,
    {
        if req.method() != Method::POST {
            return Answer::refuse(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "webhook endpoints take POST",
            );
        }
        if !is_json(req.headers()) {
            return Answer::refuse(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "deliveries must be JSON (Content-Type: application/json)",
            );
        }
        let now = Instant::now();
        if let Err(wait) = self.inner.global.take(now) {
            return Answer::refuse(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "the ingest port is at its rate limit",
            )
            .retry_after(wait);
        }
        if let Some(bucket) = &endpoint.bucket
            && let Err(wait) = bucket.take(now)
        {
            return Answer::refuse(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "this endpoint is at its rate limit",
            )
            .retry_after(wait);
        }
        let too_large = || {
            Answer::refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the body exceeds {} bytes", endpoint.max_body),
            )
        };
        if req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
            .is_some_and(|n| n > endpoint.max_body)
        {
            return too_large();
        }
        let Ok(_permit) = self.inner.in_flight.clone().try_acquire_owned() else {
            return Answer::refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "queue_full",
                "too many deliveries in flight",
            )
            .retry_after(Duration::from_secs(1));
        };
        let (parts, body) = req.into_parts();
        let body = match Limited::new(body, endpoint.max_body).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => return too_large(),
            Err(e) => {
                return Answer::refuse(
                    StatusCode::BAD_REQUEST,
                    "bad_body",
                    format!("reading the body failed: {e}"),
                );
            }
        };

        if caller == Caller::Api {
            return self.process(endpoint, &parts.headers, body).await;
        }
        let unix = time::OffsetDateTime::now_utc().unix_timestamp();
        let tolerance = i64::try_from(endpoint.replay_window.as_secs()).unwrap_or(i64::MAX);
        let peer = parts
            .extensions
            .get::<zen_serving::ConnectionInfo>()
            .and_then(|c| c.peer_certificates.clone());
        if let Err(r) = verify(
            endpoint,
            &parts.headers,
            &body,
            peer.as_deref().map(Vec::as_slice),
            unix,
            tolerance,
        ) {
            return Answer::refuse(StatusCode::UNAUTHORIZED, r.reason(), r.to_string());
        }
        // Only verified deliveries are remembered: forged ones must not poison the cache.
        let delivery_id = match &endpoint.delivery_ids {
            None => None,
            Some((name, ids)) => {
                let Some(id) = parts
                    .headers
                    .get(name.as_str())
                    .and_then(|v| v.to_str().ok())
                else {
                    return Answer::refuse(
                        StatusCode::BAD_REQUEST,
                        "missing_delivery_id",
                        format!("the delivery id header {name} is missing"),
                    );
                };
                match ids.check_and_insert(id, now) {
                    // One replica: its memory is the whole truth.
                    Seen::First if !self.inner.sink.store().shared() => {
                        Some((id.to_owned(), ids.clone(), None))
                    }
                    Seen::First => {
                        // Then in the store, which every replica shares.
                        let store = self.inner.sink.store();
                        let key = shared::key(&endpoint.namespace, &endpoint.path, id);
                        match shared::claim(&*store, key, endpoint.replay_window).await {
                            Ok(Claim::First { key, revision }) => {
                                Some((id.to_owned(), ids.clone(), Some((key, revision))))
                            }
                            Ok(Claim::Again) => {
                                return Answer::refuse(
                                    StatusCode::CONFLICT,
                                    Rejection::Replayed.reason(),
                                    Rejection::Replayed.to_string(),
                                );
                            }
                            Err(e) => {
                                ids.forget(id);
                                return Answer::refuse(
                                    StatusCode::SERVICE_UNAVAILABLE,
                                    "store_unavailable",
                                    format!("recording the delivery id failed: {e}"),
                                )
                                .retry_after(Duration::from_secs(1));
                            }
                        }
                    }
                    Seen::Again => {
                        return Answer::refuse(
                            StatusCode::CONFLICT,
                            Rejection::Replayed.reason(),
                            Rejection::Replayed.to_string(),
                        );
                    }
                    Seen::TooLong => {
                        return Answer::refuse(
                            StatusCode::BAD_REQUEST,
                            "bad_delivery_id",
                            "the delivery id is too long",
                        );
                    }
                    Seen::Full => {
                        return Answer::refuse(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "replay_cache_full",
                            "too many deliveries inside the replay window",
                        )
                        .retry_after(Duration::from_secs(5));
                    }
                }
            }
        };
        let answer = self.process(endpoint, &parts.headers, body).await;
        // Not stored: the sender's retry (same id) must get through.
        if !answer.status.is_success()
            && let Some((id, ids, claim)) = delivery_id
        {
            ids.forget(&id);
            if let Some((key, revision)) = claim {
                shared::release(&*self.inner.sink.store(), key, revision).await;
            }
        }
        answer
    }

    async fn process(&self, endpoint: &Endpoint, headers: &HeaderMap, body: Bytes) -> Answer {
        let payload: Value = match zen_serving::json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => {
                return Answer::refuse(
                    StatusCode::BAD_REQUEST,
                    "bad_json",
                    format!("the body is not JSON: {e}"),
                );
            }
        };
        let headers = cel_headers(headers, &endpoint.verifier.scheme);
        let pipeline = endpoint.pipeline.clone();
        let source = endpoint.source.clone();
        // CEL may run for a while within its budget: off the async workers, unless it is
        // sure to be quick.
        let outcome = match pipeline.run_quick(&source, &payload, &headers) {
            Some(done) => Ok(done),
            None => {
                tokio::task::spawn_blocking(move || pipeline.run(&source, &payload, &headers)).await
            }
        };
        let (spec, dedup) = match outcome {
            Ok(Ok(Outcome::Dropped)) => {
                return Answer::ok(
                    StatusCode::ACCEPTED,
                    json!({"status": "dropped by the Ingestor's filter"}),
                );
            }
            Ok(Ok(Outcome::Observe { spec, dedup })) => (spec, dedup),
            Ok(Err(e)) => {
                let message = e.to_string();
                self.inner.endpoints.mapping_failed(
                    &endpoint.namespace,
                    &endpoint.ingestor,
                    &message,
                );
                return Answer::refuse(StatusCode::UNPROCESSABLE_ENTITY, "mapping_failed", message);
            }
            Err(e) => {
                return Answer::refuse(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    e.to_string(),
                );
            }
        };
        match self
            .inner
            .sink
            .record(&endpoint.namespace, &endpoint.ingestor, spec, dedup)
            .await
        {
            Ok(Recorded::Created { name }) => Answer::ok(
                StatusCode::CREATED,
                json!({"status": "created", "observation": format!("{}/{name}", endpoint.namespace)}),
            ),
            Ok(Recorded::Folded { name, count }) => Answer::ok(
                StatusCode::OK,
                json!({"status": "deduplicated", "observation": format!("{}/{name}", endpoint.namespace), "count": count}),
            ),
            Err(SinkError::Invalid(m)) => {
                let message = format!("the mapping produced an invalid Observation: {m}");
                self.inner.endpoints.mapping_failed(
                    &endpoint.namespace,
                    &endpoint.ingestor,
                    &message,
                );
                Answer::refuse(StatusCode::UNPROCESSABLE_ENTITY, "mapping_invalid", message)
            }
            Err(e @ SinkError::Store { .. }) => Answer::refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                e.to_string(),
            )
            .retry_after(Duration::from_secs(1)),
        }
    }
}

/// Checks the signature with the current secrets, then with the ones a rotation replaced.
fn verify(
    endpoint: &Endpoint,
    headers: &HeaderMap,
    body: &[u8],
    peer: Option<&[rustls::pki_types::CertificateDer<'static>]>,
    now: i64,
    tolerance: i64,
) -> Result<(), Rejection> {
    match endpoint
        .verifier
        .verify(headers, body, peer, now, tolerance)
    {
        Ok(_) => Ok(()),
        Err(r @ (Rejection::BadSignature | Rejection::BadCertificate)) => {
            match &endpoint.previous {
                Some((secrets, until)) if *until > Instant::now() => {
                    Verifier::new(endpoint.verifier.scheme.clone(), secrets.clone())
                        .map_err(|_| r)?
                        .verify(headers, body, peer, now, tolerance)
                        .map(|_| ())
                }
                _ => Err(r),
            }
        }
        Err(r) => Err(r),
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .is_some_and(|t| {
            t == "application/json" || (t.starts_with("application/") && t.ends_with("+json"))
        })
}

/// Lower-cased header names to values (repeats joined by ", "), without credentials.
fn cel_headers(headers: &HeaderMap, scheme: &Scheme) -> Value {
    let mut map = Map::new();
    for name in headers.keys() {
        let n = name.as_str();
        if HIDDEN_HEADERS.contains(&n) || matches!(scheme, Scheme::Token { header } if header == n)
        {
            continue;
        }
        let mut values = headers.get_all(name).iter().filter_map(|v| v.to_str().ok());
        let mut joined = values.next().unwrap_or_default().to_owned();
        for v in values {
            joined.push_str(", ");
            joined.push_str(v);
        }
        map.insert(n.to_owned(), Value::String(joined));
    }
    Value::Object(map)
}

fn respond(answer: Answer) -> Response<Body> {
    let mut resp = Response::new(full(answer.body.to_string()));
    *resp.status_mut() = answer.status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(wait) = answer.retry_after {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        if let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    if answer.status == StatusCode::METHOD_NOT_ALLOWED {
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
    }
    resp
}

impl<B> tower::Service<Request<B>> for IngestService
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<zen_serving::BoxError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.handle(req).await) })
    }
}
