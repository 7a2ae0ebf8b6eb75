use std::collections::BTreeMap;

/// A user as Kubernetes authentication yields it (`user.Info` in k8s.io/apiserver).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserInfo {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

/// The group every authenticated user is in, added as kube-apiserver adds it.
pub const ALL_AUTHENTICATED: &str = "system:authenticated";
pub const ANONYMOUS_USER: &str = "system:anonymous";
pub const ALL_UNAUTHENTICATED: &str = "system:unauthenticated";

impl UserInfo {
    /// The user of requests that no authenticator recognised.
    pub fn anonymous() -> Self {
        Self {
            name: ANONYMOUS_USER.into(),
            groups: vec![ALL_UNAUTHENTICATED.into()],
            ..Self::default()
        }
    }

    /// Adds `system:authenticated` unless present, as kube-apiserver does for every
    /// authenticated request (never for the anonymous user).
    pub(crate) fn with_authenticated_group(mut self) -> Self {
        if !self.groups.iter().any(|g| g == ALL_AUTHENTICATED) {
            self.groups.push(ALL_AUTHENTICATED.into());
        }
        self
    }
}
