//! Authentication: the methods a request may authenticate with, tried in kube-apiserver's
//! order, and the anonymous fallback.

mod request_header;
mod token;
mod x509;

use std::{future::Future, pin::Pin, sync::Arc};

pub use request_header::{DelegatedAuthnConfig, RequestHeaderAuthenticator, RequestHeaderConfig};
pub use token::{TokenReviewAuthenticator, user_of_review};
pub use x509::ClientCertAuthenticator;

use crate::UserInfo;

/// Why a request's credentials were refused. Clients only ever see "Unauthorized"; the
/// detail is for logs.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthnError {
    #[error("verifying the client certificate {subject:?} failed: {reason}")]
    Certificate { subject: String, reason: String },
    #[error("no credentials and anonymous requests are not allowed")]
    NoCredentials,
    #[error("client CA: {0}")]
    ClientCa(String),
    #[error("front-proxy certificate CN {cn:?} is not one of the allowed names")]
    ProxyNotAllowed { cn: String },
    #[error("{0}")]
    Config(String),
    #[error("the token was refused: {0}")]
    Token(String),
    /// kube-apiserver could not be asked; the client may retry.
    #[error("token review unavailable: {0}")]
    Unavailable(String),
}

pub type AuthnFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Option<UserInfo>, AuthnError>> + Send + 'a>>;

/// One way of authenticating. `Ok(None)` means the request carries no credentials this
/// method accepts; `Err` means it carries some and they are bad. As in kube-apiserver's
/// union authenticator, the next method is tried either way, and errors only fail the
/// request when no method succeeds.
pub trait Authenticator: Send + Sync {
    fn authenticate<'a>(&'a self, req: &'a http::request::Parts) -> AuthnFuture<'a>;
}

/// A method that can be replaced while requests use it, for settings that change at run
/// time (the cluster's authentication ConfigMap). `None`: the method is off.
#[derive(Default)]
pub struct Swappable(std::sync::RwLock<Option<Arc<dyn Authenticator>>>);

impl Swappable {
    pub fn new(method: Option<Arc<dyn Authenticator>>) -> Arc<Self> {
        Arc::new(Self(std::sync::RwLock::new(method)))
    }

    pub fn set(&self, method: Option<Arc<dyn Authenticator>>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = method;
    }
}

impl Authenticator for Swappable {
    fn authenticate<'a>(&'a self, req: &'a http::request::Parts) -> AuthnFuture<'a> {
        let current = self.0.read().unwrap_or_else(|p| p.into_inner()).clone();
        Box::pin(async move {
            match current {
                Some(method) => method.authenticate(req).await,
                None => Ok(None),
            }
        })
    }
}

/// The methods of a server, in order, and whether unauthenticated requests become
/// `system:anonymous` (for authorization to decide) or are refused with 401.
#[derive(Clone)]
pub struct Authentication {
    methods: Vec<Arc<dyn Authenticator>>,
    anonymous: bool,
}

impl Authentication {
    pub fn new(methods: Vec<Arc<dyn Authenticator>>, anonymous: bool) -> Self {
        Self { methods, anonymous }
    }

    pub async fn authenticate(&self, req: &http::request::Parts) -> Result<UserInfo, AuthnError> {
        let mut first_error = None;
        for method in &self.methods {
            match method.authenticate(req).await {
                Ok(Some(user)) => return Ok(user.with_authenticated_group()),
                Ok(None) => {}
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        // Bad credentials are never downgraded to anonymous.
        match first_error {
            Some(e) => Err(e),
            None if self.anonymous => Ok(UserInfo::anonymous()),
            None => Err(AuthnError::NoCredentials),
        }
    }
}
