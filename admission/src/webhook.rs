//! The webhook: one AdmissionReview in, one answer out, for `/admission/mutate` and
//! `/admission/validate`.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::{Arc, RwLock},
    task::{Context, Poll},
    time::Instant,
};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use serde_json::{Value, json};
use zen_cel::{Budget, Variables};
use zen_crds::IngestorPolicy;
use zen_serving::{Body, full};

use crate::{
    checks::{Checker, Kind},
    cluster::ClusterView,
    metrics::{AdmissionMetrics, PolicyCounters},
    policy::{Evaluation, PolicyError, PolicySet},
    review::{
        AdmissionRequest, AdmissionResponse, MAX_REVIEW_BYTES, OldObject, Operation, Review,
        ReviewError,
    },
};

/// Which webhook a review came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Mutate,
    Validate,
}

impl Mode {
    pub fn from_path(path: &str) -> Option<Self> {
        match path {
            "/admission/mutate" => Some(Self::Mutate),
            "/admission/validate" => Some(Self::Validate),
            _ => None,
        }
    }
}

/// Admission of Ingestors and IngestorPolicies.
pub struct Admission {
    checker: Checker,
    policies: RwLock<Arc<Policies>>,
    cluster: Arc<dyn ClusterView>,
    metrics: Option<AdmissionMetrics>,
}

const GROUP: &str = "config.zen.watcher.io";

/// The policy set in force and its evaluation counters, replaced together.
#[derive(Default)]
struct Policies {
    set: PolicySet,
    /// By the set's order; empty without metrics.
    counters: Vec<PolicyCounters>,
}

impl Admission {
    pub fn new(
        cluster: Arc<dyn ClusterView>,
        metrics: Option<AdmissionMetrics>,
    ) -> Result<Self, String> {
        Ok(Self {
            checker: Checker::new()?,
            policies: RwLock::new(Arc::default()),
            cluster,
            metrics,
        })
    }

    /// Replaces the policy set; returns the policies left out because they do not compile.
    pub fn set_policies(&self, policies: &[IngestorPolicy]) -> Vec<(String, Vec<PolicyError>)> {
        let (set, failed) = PolicySet::compile(policies);
        let counters = match &self.metrics {
            Some(m) => set.names().map(|name| m.policy_counters(name)).collect(),
            None => Vec::new(),
        };
        *self.policies.write().unwrap_or_else(|p| p.into_inner()) =
            Arc::new(Policies { set, counters });
        failed
    }

    fn policies(&self) -> Arc<Policies> {
        self.policies
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Answers a review body.
    pub fn handle(&self, mode: Mode, body: &[u8]) -> Result<Vec<u8>, ReviewError> {
        let start = Instant::now();
        // One policy set for the whole review: the one that decides whether its old object
        // is read also evaluates it.
        let policies = self.policies();
        let old = if policies.set.reads_old_object() {
            OldObject::Read
        } else {
            OldObject::Skip
        };
        let review = Review::parse(body)?;
        let request = review.request(old)?;
        let response = self.review_with(&policies, mode, &request);
        if let Some(m) = &self.metrics {
            m.observe(mode, &request, &response, start.elapsed());
        }
        Ok(response.into_review())
    }

    /// The answer to one request.
    pub fn review(&self, mode: Mode, request: &AdmissionRequest) -> AdmissionResponse {
        self.review_with(&self.policies(), mode, request)
    }

    fn review_with(
        &self,
        policies: &Policies,
        mode: Mode,
        request: &AdmissionRequest,
    ) -> AdmissionResponse {
        let uid = &*request.uid;
        let kind = (request.kind.group == GROUP)
            .then(|| Kind::from_kind(&request.kind.kind))
            .flatten();
        let (Some(kind), Operation::Create | Operation::Update, None) =
            (kind, request.operation, request.sub_resource.as_deref())
        else {
            return AdmissionResponse::allow(uid);
        };
        let Some(object) = request.object else {
            return AdmissionResponse::deny(
                uid,
                400,
                "BadRequest",
                format!("a {} request carries no object", request.operation.as_str()),
            );
        };
        let mut budget = Budget::default();
        match (mode, kind) {
            (Mode::Validate, _) => self.validate(policies, kind, request, object, &mut budget),
            (Mode::Mutate, Kind::Ingestor) => self.mutate(policies, request, object, &mut budget),
            (Mode::Mutate, Kind::IngestorPolicy) => AdmissionResponse::allow(uid),
        }
    }

    fn validate(
        &self,
        policies: &Policies,
        kind: Kind,
        request: &AdmissionRequest,
        object: zen_json::Value<'_>,
        budget: &mut Budget,
    ) -> AdmissionResponse {
        let uid = &*request.uid;
        // Made before the checks, whose CEL rules the policies' evaluation then follows.
        let request_var = (kind == Kind::Ingestor).then(|| request_variable(request));
        let findings = self
            .checker
            .check(kind, object, self.cluster.as_ref(), budget);
        let name = request.name.as_deref().unwrap_or_default();
        if !findings.errors.is_empty() {
            let mut r = AdmissionResponse::deny(uid, 422, "Invalid", findings.message(kind, name));
            r.warnings = findings.warnings;
            return r;
        }
        let mut warnings = findings.warnings;
        let Some(request_var) = request_var else {
            let mut r = AdmissionResponse::allow(uid);
            r.warnings = warnings;
            return r;
        };
        let vars = variables(request, object, &request_var);
        let labels = self.namespace_labels(request);
        let outcome = policies.set.validate(labels.as_deref(), &vars, budget);
        policies.count(&outcome.evaluations);
        warnings.extend(outcome.warnings);
        let mut r = match outcome.denials.first() {
            Some(first) => AdmissionResponse::deny(
                uid,
                first.code(),
                first.reason(),
                outcome
                    .denials
                    .iter()
                    .map(|d| d.message.as_str())
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            None => AdmissionResponse::allow(uid),
        };
        r.warnings = warnings;
        r.audit_annotations = outcome.audit_annotations;
        r
    }

    fn mutate(
        &self,
        policies: &Policies,
        request: &AdmissionRequest,
        object: zen_json::Value<'_>,
        budget: &mut Budget,
    ) -> AdmissionResponse {
        let uid = &*request.uid;
        let request_var = request_variable(request);
        let vars = variables(request, object, &request_var);
        let labels = self.namespace_labels(request);
        let outcome = policies
            .set
            .mutate(labels.as_deref(), &vars, object, budget);
        policies.count(&outcome.evaluations);
        if let Some(first) = outcome.denials.first() {
            return AdmissionResponse::deny(
                uid,
                first.code(),
                first.reason(),
                first.message.clone(),
            );
        }
        AdmissionResponse::allow(uid).with_patch(&outcome.patch)
    }

    fn namespace_labels(&self, request: &AdmissionRequest) -> Option<crate::cluster::Labels> {
        request
            .namespace
            .as_deref()
            .and_then(|ns| self.cluster.namespace_labels(ns))
    }
}

impl Policies {
    fn count(&self, evaluations: &[(usize, Evaluation)]) {
        for (policy, result) in evaluations {
            if let Some(c) = self.counters.get(*policy) {
                c.count(*result);
            }
        }
    }
}

/// `object`, `oldObject` and `request`, converted to CEL once for every expression. All
/// three are borrowed, so the paths expressions read from them are found once per review.
/// `oldObject` is null for a CREATE, and where no policy reads it (the review's was skipped).
fn variables<'a>(
    request: &AdmissionRequest<'a>,
    object: zen_json::Value<'a>,
    request_var: &'a Value,
) -> Variables<'a> {
    let mut vars = Variables::new();
    vars.set_document("object", object);
    match request.old_object {
        Some(old) => vars.set_document("oldObject", old),
        None => vars.set("oldObject", &Value::Null),
    }
    vars.set("request", request_var);
    vars
}

/// The `request` variable: what kube-apiserver's admission attributes give a policy.
fn request_variable(request: &AdmissionRequest) -> Value {
    json!({
        "operation": request.operation.as_str(),
        "namespace": request.namespace.as_deref().unwrap_or_default(),
        "name": request.name.as_deref().unwrap_or_default(),
        "userInfo": request.user_info,
        "dryRun": request.dry_run.unwrap_or(false),
    })
}

/// The HTTP face of [`Admission`].
#[derive(Clone)]
pub struct AdmissionService {
    admission: Arc<Admission>,
}

impl AdmissionService {
    pub fn new(admission: Arc<Admission>) -> Self {
        Self { admission }
    }

    async fn call_inner<B>(admission: Arc<Admission>, req: Request<B>) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<zen_serving::BoxError>,
    {
        let Some(mode) = Mode::from_path(req.uri().path()) else {
            return failure(StatusCode::NOT_FOUND, "NotFound", "no such webhook path");
        };
        if req.method() != Method::POST {
            return failure(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "admission webhooks take POST",
            );
        }
        let body = match Limited::new(req.into_body(), MAX_REVIEW_BYTES)
            .collect()
            .await
        {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                return failure(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "RequestEntityTooLarge",
                    &format!("reading the review: {e}"),
                );
            }
        };
        match admission.handle(mode, &body) {
            Ok(answer) => {
                let mut resp = Response::new(full(answer));
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
                resp
            }
            Err(e) => failure(StatusCode::BAD_REQUEST, "BadRequest", &e.to_string()),
        }
    }
}

/// A `metav1.Status` failure (the webhook's caller then applies its failurePolicy).
fn failure(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16(),
    });
    let mut resp = Response::new(full(body.to_string()));
    *resp.status_mut() = code;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

impl<B> tower::Service<Request<B>> for AdmissionService
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
        let admission = self.admission.clone();
        Box::pin(async move { Ok(Self::call_inner(admission, req).await) })
    }
}
