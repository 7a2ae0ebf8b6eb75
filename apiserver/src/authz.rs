//! Authorization as a tower layer: each request's user, verb and resource (read by
//! `request_info` as kube-apiserver reads them) are put to an [`Authorizer`]; a denial is a
//! 403 `metav1.Status` worded as kube-apiserver words it.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use http::{Request, Response};
use tower::{Layer, Service, ServiceExt};
use zen_auth::{
    UserInfo,
    authz::{Attributes, Authorizer, Decision},
};
use zen_crds::{API_GROUP, VERSION};
use zen_serving::Body;

use crate::{
    request_info::{RequestInfo, ResourceRequest},
    status::ApiError,
};

/// Health paths need no permission (probes carry no credentials).
const ALWAYS_ALLOWED: [&str; 3] = ["/healthz", "/livez", "/readyz"];

#[derive(Clone)]
pub struct AuthorizationLayer {
    authorizer: Arc<dyn Authorizer>,
}

impl AuthorizationLayer {
    pub fn new(authorizer: Arc<dyn Authorizer>) -> Self {
        Self { authorizer }
    }
}

impl<S> Layer<S> for AuthorizationLayer {
    type Service = AuthorizationService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthorizationService {
            authorizer: self.authorizer.clone(),
            inner,
        }
    }
}

#[derive(Clone)]
pub struct AuthorizationService<S> {
    authorizer: Arc<dyn Authorizer>,
    inner: S,
}

/// The SubjectAccessReview attributes of a request.
pub fn attributes(info: &RequestInfo) -> Attributes {
    match info {
        RequestInfo::Resource(ResourceRequest {
            verb,
            namespace,
            resource,
            name,
            subresource,
        }) => Attributes::Resource {
            verb: (*verb).to_owned(),
            group: API_GROUP.to_owned(),
            version: VERSION.to_owned(),
            resource: resource.clone(),
            subresource: subresource.clone(),
            namespace: namespace.clone(),
            name: name.clone(),
        },
        RequestInfo::NonResource { path, verb } => Attributes::NonResource {
            verb: verb.clone(),
            path: path.clone(),
        },
    }
}

/// kube-apiserver's wording of a denial.
pub fn forbidden(user: &UserInfo, attrs: &Attributes, reason: &str) -> ApiError {
    let mut message = match attrs {
        Attributes::Resource {
            verb,
            group,
            resource,
            subresource,
            namespace,
            name,
            ..
        } => {
            let what = match subresource {
                Some(s) => format!("{resource}/{s}"),
                None => resource.clone(),
            };
            let scope = match namespace {
                Some(ns) => format!("in the namespace \"{ns}\""),
                None => "at the cluster scope".to_owned(),
            };
            let object = match name {
                Some(n) => format!("{resource}.{group} \"{n}\""),
                None => format!("{resource}.{group}"),
            };
            format!(
                "{object} is forbidden: User \"{}\" cannot {verb} resource \"{what}\" in API group \"{group}\" {scope}",
                user.name
            )
        }
        Attributes::NonResource { verb, path } => {
            format!(
                "forbidden: User \"{}\" cannot {verb} path \"{path}\"",
                user.name
            )
        }
    };
    if !reason.is_empty() {
        message.push_str(": ");
        message.push_str(reason);
    }
    ApiError::Forbidden(message)
}

impl<S, B> Service<Request<B>> for AuthorizationService<S>
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
        let authorizer = self.authorizer.clone();
        let inner = self.inner.clone();
        Box::pin(async move {
            let path = req.uri().path();
            if ALWAYS_ALLOWED.contains(&path) {
                return inner.oneshot(req).await;
            }
            let watch = crate::params::Params::parse(req.uri().query()).is_ok_and(|p| p.watch);
            let attrs = attributes(&RequestInfo::parse(req.method(), path, watch));
            let user = req
                .extensions()
                .get::<UserInfo>()
                .cloned()
                .unwrap_or_else(UserInfo::anonymous);
            match authorizer.authorize(&user, &attrs).await {
                Ok(Decision::Allow) => inner.oneshot(req).await,
                Ok(Decision::Deny(reason)) => Ok(forbidden(&user, &attrs, &reason).into_response()),
                Err(e) => {
                    tracing::warn!(error = %e, "authorization failed");
                    Ok(ApiError::Internal(e.to_string()).into_response())
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denials_are_worded_as_kube_apiserver_words_them() {
        let alice = UserInfo {
            name: "alice".into(),
            ..UserInfo::default()
        };
        let info = RequestInfo::parse(
            &http::Method::DELETE,
            "/apis/zen.watcher.io/v1alpha1/namespaces/default/observations/bar",
            false,
        );
        // What kube-apiserver itself said to `kubectl delete observation bar --as=alice`.
        let recorded: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../shared/testdata/kube-apiserver-1.28/aggregation/kubectl-delete-as-alice-forbidden.json"
            ))
            .unwrap(),
        )
        .unwrap();
        let e = forbidden(&alice, &attributes(&info), "");
        assert_eq!(
            format!("Error from server (Forbidden): {e}\n"),
            recorded["kubectl"]["stderr"].as_str().unwrap()
        );
        let info = RequestInfo::parse(
            &http::Method::GET,
            "/apis/zen.watcher.io/v1alpha1/observations",
            true,
        );
        assert!(forbidden(&alice, &attributes(&info), "").to_string().contains("cannot watch resource \"observations\" in API group \"zen.watcher.io\" at the cluster scope"));
        let info = RequestInfo::parse(&http::Method::GET, "/openapi/v2", false);
        assert_eq!(
            forbidden(&alice, &attributes(&info), "").to_string(),
            "forbidden: User \"alice\" cannot get path \"/openapi/v2\""
        );
    }
}
