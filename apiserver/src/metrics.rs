//! Request metrics of the secure port, as a tower layer so handlers stay free of bookkeeping.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Instant,
};

use http::{Request, Response};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};
use tower::{Layer, Service};
use zen_serving::Body;

use crate::request_info::RequestInfo;

/// Collectors of the aggregated API.
#[derive(Clone)]
pub struct ApiMetrics {
    requests: IntCounterVec,
    latency: HistogramVec,
    /// Watches open right now (DESIGN: "open watches").
    pub open_watches: IntGauge,
}

impl ApiMetrics {
    /// Creates the collectors and registers them in `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let requests = IntCounterVec::new(
            Opts::new(
                "zen_watcher_api_requests_total",
                "API requests by verb, resource and HTTP code.",
            ),
            &["verb", "resource", "code"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "zen_watcher_api_request_duration_seconds",
                "Time to the response headers of API requests, by verb and resource.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["verb", "resource"],
        )?;
        let open_watches =
            IntGauge::new("zen_watcher_api_open_watches", "Watches open right now.")?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(open_watches.clone()))?;
        Ok(Self {
            requests,
            latency,
            open_watches,
        })
    }
}

/// Counts and times every request passing through.
#[derive(Clone)]
pub struct MetricsLayer {
    metrics: ApiMetrics,
}

impl MetricsLayer {
    pub fn new(metrics: ApiMetrics) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = MetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MetricsService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone)]
pub struct MetricsService<S> {
    inner: S,
    metrics: ApiMetrics,
}

impl<S, B> Service<Request<B>> for MetricsService<S>
where
    S: Service<Request<B>, Response = Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let watch = req
            .uri()
            .query()
            .is_some_and(|q| q.split('&').any(|kv| kv == "watch=true" || kv == "watch=1"));
        let (verb, resource) = match RequestInfo::parse(req.method(), req.uri().path(), watch) {
            RequestInfo::Resource(r) => {
                let resource = match &r.subresource {
                    Some(sub) => format!("{}/{sub}", r.resource),
                    None => r.resource,
                };
                (r.verb.to_owned(), resource)
            }
            // Non-resource paths are few and fixed, but label them coarsely anyway so a client
            // probing random paths cannot create unbounded series.
            RequestInfo::NonResource { verb, path } => (verb, non_resource_label(&path)),
        };
        let metrics = self.metrics.clone();
        let start = Instant::now();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let resp = fut.await?;
            metrics
                .latency
                .with_label_values(&[&verb, &resource])
                .observe(start.elapsed().as_secs_f64());
            metrics
                .requests
                .with_label_values(&[&verb, &resource, resp.status().as_str()])
                .inc();
            Ok(resp)
        })
    }
}

fn non_resource_label(path: &str) -> String {
    const KNOWN: &[&str] = &[
        "/apis",
        "/version",
        "/healthz",
        "/livez",
        "/readyz",
        "/openapi/v2",
        "/openapi/v3",
        "/admission/validate",
        "/admission/mutate",
    ];
    if KNOWN.contains(&path) {
        path.to_owned()
    } else if path.starts_with("/openapi/v3/") {
        "/openapi/v3/*".to_owned()
    } else if path.starts_with("/apis/") {
        "/apis/*".to_owned()
    } else {
        "other".to_owned()
    }
}
