//! Authentication: the methods a request may authenticate with, tried in kube-apiserver's
//! order, and the anonymous fallback.

mod x509;

use std::{future::Future, pin::Pin, sync::Arc};

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
}

pub type AuthnFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Option<UserInfo>, AuthnError>> + Send + 'a>>;

/// One way of authenticating. `Ok(None)` means the request carries no credentials of this
/// kind (the next method is tried); `Err` means it does and they are bad (the request fails,
/// as kube-apiserver's union authenticator fails on the first error).
pub trait Authenticator: Send + Sync {
    fn authenticate<'a>(&'a self, req: &'a http::request::Parts) -> AuthnFuture<'a>;
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
        for method in &self.methods {
            if let Some(user) = method.authenticate(req).await? {
                return Ok(user.with_authenticated_group());
            }
        }
        if self.anonymous {
            Ok(UserInfo::anonymous())
        } else {
            Err(AuthnError::NoCredentials)
        }
    }
}
