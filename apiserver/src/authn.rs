//! Authentication as a tower layer: every request reaching the API carries the
//! [`UserInfo`] it authenticated as, or is answered 401 here. Also `SelfSubjectReview`, so
//! `kubectl auth whoami` shows who zen-watcher takes the caller for.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use http::{Method, Request, Response, StatusCode};
use serde_json::json;
use tower::{Layer, Service, ServiceExt};
use zen_auth::{UserInfo, authn::Authentication};
use zen_serving::Body;

use crate::status::ApiError;

/// Puts the authenticated [`UserInfo`] into each request's extensions.
#[derive(Clone)]
pub struct AuthenticationLayer {
    authn: Authentication,
}

impl AuthenticationLayer {
    pub fn new(authn: Authentication) -> Self {
        Self { authn }
    }
}

impl<S> Layer<S> for AuthenticationLayer {
    type Service = AuthenticationService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthenticationService {
            authn: self.authn.clone(),
            inner,
        }
    }
}

#[derive(Clone)]
pub struct AuthenticationService<S> {
    authn: Authentication,
    inner: S,
}

impl<S, B> Service<Request<B>> for AuthenticationService<S>
where
    S: Service<Request<B>, Response = Response<Body>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
    B: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let authn = self.authn.clone();
        let inner = self.inner.clone();
        Box::pin(async move {
            let (mut parts, body) = req.into_parts();
            match authn.authenticate(&parts).await {
                Ok(user) => {
                    parts.extensions.insert(user);
                    inner.oneshot(Request::from_parts(parts, body)).await
                }
                Err(e) => {
                    // The reason stays in the log: kube-apiserver tells clients no more.
                    tracing::debug!(error = %e, path = parts.uri.path(), "authentication failed");
                    Ok(ApiError::Unauthorized("Unauthorized".into()).into_response())
                }
            }
        })
    }
}

/// The versions of `authentication.k8s.io` whose `selfsubjectreviews` kubectl may post to
/// (it falls back from v1 to v1beta1 to v1alpha1 on 404).
const REVIEW_VERSIONS: [&str; 3] = ["v1", "v1beta1", "v1alpha1"];

/// The API version a `SelfSubjectReview` path asks for, if `path` is one.
pub fn self_subject_review_version(path: &str) -> Option<&'static str> {
    let version = path
        .strip_prefix("/apis/authentication.k8s.io/")?
        .strip_suffix("/selfsubjectreviews")?;
    REVIEW_VERSIONS.into_iter().find(|v| *v == version)
}

/// Answers a `SelfSubjectReview` create with the caller's identity.
pub fn self_subject_review(
    version: &str,
    method: &Method,
    user: Option<&UserInfo>,
) -> Result<Response<Body>, ApiError> {
    if method != Method::POST {
        return Err(ApiError::MethodNotAllowed(format!(
            "the server does not allow this method on the requested resource: {method}"
        )));
    }
    let user = user.ok_or_else(|| ApiError::Unauthorized("Unauthorized".into()))?;
    let mut info = json!({"username": user.name, "groups": user.groups});
    if !user.uid.is_empty() {
        info["uid"] = json!(user.uid);
    }
    if !user.extra.is_empty() {
        info["extra"] = json!(user.extra);
    }
    let review = json!({
        "kind": "SelfSubjectReview",
        "apiVersion": format!("authentication.k8s.io/{version}"),
        "metadata": {"creationTimestamp": crate::objects::now_rfc3339()},
        "status": {"userInfo": info},
    });
    let mut resp = Response::new(zen_serving::full(review.to_string()));
    *resp.status_mut() = StatusCode::CREATED;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}
