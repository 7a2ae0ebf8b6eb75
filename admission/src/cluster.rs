//! What admission needs to know about the cluster besides the request: namespace labels (for
//! `namespaceSelector`) and which Secrets exist (for warnings). `serve` answers from watches of
//! the cluster, `dev` from its config directory, `policy test` from the files it is given.

use std::collections::BTreeMap;

pub trait ClusterView: Send + Sync {
    /// Labels of a namespace, if it is known.
    fn namespace_labels(&self, namespace: &str) -> Option<BTreeMap<String, String>>;
    /// The data keys of a Secret, if it exists.
    fn secret_keys(&self, namespace: &str, name: &str) -> Option<Vec<String>>;
}

/// A fixed view: namespaces and Secrets as listed.
#[derive(Debug, Clone, Default)]
pub struct StaticCluster {
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
    /// `(namespace, name)` → keys.
    pub secrets: BTreeMap<(String, String), Vec<String>>,
}

impl ClusterView for StaticCluster {
    fn namespace_labels(&self, namespace: &str) -> Option<BTreeMap<String, String>> {
        self.namespaces.get(namespace).cloned()
    }

    fn secret_keys(&self, namespace: &str, name: &str) -> Option<Vec<String>> {
        self.secrets
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }
}
