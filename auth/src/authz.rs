//! Authorization: may this user do this? Asked of kube-apiserver with a
//! `SubjectAccessReview` per request, as delegated authorization does, with allow and deny
//! answers cached for a short, bounded time.

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use serde_json::{Value, json};
use zen_kube::Client;

use crate::{UserInfo, cache::Cache};

/// What a request does, in SubjectAccessReview terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attributes {
    Resource {
        verb: String,
        group: String,
        version: String,
        resource: String,
        subresource: Option<String>,
        namespace: Option<String>,
        name: Option<String>,
    },
    NonResource {
        verb: String,
        path: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Denied (or no opinion); the reason kube-apiserver gave, if any.
    Deny(String),
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("authorization is unavailable: {0}")]
pub struct AuthzError(pub String);

pub type AuthzFuture<'a> = Pin<Box<dyn Future<Output = Result<Decision, AuthzError>> + Send + 'a>>;

pub trait Authorizer: Send + Sync {
    fn authorize<'a>(&'a self, user: &'a UserInfo, attrs: &'a Attributes) -> AuthzFuture<'a>;
}

/// Everyone may do everything: `dev`, where the only clients hold the admin certificate.
pub struct AlwaysAllow;

impl Authorizer for AlwaysAllow {
    fn authorize<'a>(&'a self, _: &'a UserInfo, _: &'a Attributes) -> AuthzFuture<'a> {
        Box::pin(async { Ok(Decision::Allow) })
    }
}

/// Groups allowed without asking, as kube-apiserver's delegating authorizer allows
/// `system:masters` by default.
pub const ALWAYS_ALLOW_GROUPS: [&str; 1] = ["system:masters"];
const TTL: Duration = Duration::from_secs(10);
const ENTRIES: usize = 8192;

pub struct SubjectAccessReviewer {
    client: Client,
    cache: Cache<Decision>,
}

impl SubjectAccessReviewer {
    pub fn new(client: Client) -> Arc<Self> {
        Arc::new(Self {
            client,
            cache: Cache::new(TTL, ENTRIES),
        })
    }
}

/// The SubjectAccessReview kube-apiserver is asked.
pub fn review_of(user: &UserInfo, attrs: &Attributes) -> Value {
    let mut spec = json!({"user": user.name, "groups": user.groups});
    if !user.uid.is_empty() {
        spec["uid"] = json!(user.uid);
    }
    if !user.extra.is_empty() {
        spec["extra"] = json!(user.extra);
    }
    match attrs {
        Attributes::Resource {
            verb,
            group,
            version,
            resource,
            subresource,
            namespace,
            name,
        } => {
            let mut ra =
                json!({"verb": verb, "group": group, "version": version, "resource": resource});
            for (k, v) in [
                ("subresource", subresource),
                ("namespace", namespace),
                ("name", name),
            ] {
                if let Some(v) = v {
                    ra[k] = json!(v);
                }
            }
            spec["resourceAttributes"] = ra;
        }
        Attributes::NonResource { verb, path } => {
            spec["nonResourceAttributes"] = json!({"verb": verb, "path": path});
        }
    }
    json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec})
}

/// The decision a SubjectAccessReview answer carries.
pub fn decision_of(answer: &Value) -> Decision {
    let status = &answer["status"];
    if status["allowed"] == true && status["denied"] != true {
        Decision::Allow
    } else {
        Decision::Deny(status["reason"].as_str().unwrap_or_default().to_owned())
    }
}

impl Authorizer for SubjectAccessReviewer {
    fn authorize<'a>(&'a self, user: &'a UserInfo, attrs: &'a Attributes) -> AuthzFuture<'a> {
        Box::pin(async move {
            if user
                .groups
                .iter()
                .any(|g| ALWAYS_ALLOW_GROUPS.contains(&g.as_str()))
            {
                return Ok(Decision::Allow);
            }
            let review = review_of(user, attrs);
            let key = Cache::<()>::key(&[review["spec"].to_string().as_bytes()]);
            if let Some(d) = self.cache.get(&key) {
                return Ok(d);
            }
            let answer = self
                .client
                .create(
                    "/apis/authorization.k8s.io/v1/subjectaccessreviews",
                    &review,
                )
                .await
                .map_err(|e| AuthzError(e.to_string()))?;
            let decision = decision_of(&answer);
            self.cache.put(key, decision.clone());
            Ok(decision)
        })
    }
}
