//! What admission needs to know about the cluster besides the request: namespace labels (for
//! `namespaceSelector`) and which Secrets exist (for warnings). `serve` answers from watches of
//! the cluster, `dev` from its config directory, `policy test` from the files it is given.
//! Answers are shared, not copied: every review asks.

use std::{collections::BTreeMap, sync::Arc};

/// A namespace's labels.
pub type Labels = Arc<BTreeMap<String, String>>;

pub trait ClusterView: Send + Sync {
    /// Labels of a namespace, if it is known.
    fn namespace_labels(&self, namespace: &str) -> Option<Labels>;
    /// The data keys of a Secret, if it exists.
    fn secret_keys(&self, namespace: &str, name: &str) -> Option<Arc<[String]>>;
}

/// A fixed view: namespaces and Secrets as listed.
#[derive(Debug, Clone, Default)]
pub struct StaticCluster {
    namespaces: BTreeMap<String, Labels>,
    /// By namespace, then name: the data keys.
    secrets: BTreeMap<String, BTreeMap<String, Arc<[String]>>>,
}

impl StaticCluster {
    pub fn insert_namespace(&mut self, name: String, labels: BTreeMap<String, String>) {
        self.namespaces.insert(name, Arc::new(labels));
    }

    pub fn insert_secret(&mut self, namespace: String, name: String, keys: Vec<String>) {
        self.secrets
            .entry(namespace)
            .or_default()
            .insert(name, keys.into());
    }
}

impl ClusterView for StaticCluster {
    fn namespace_labels(&self, namespace: &str) -> Option<Labels> {
        self.namespaces.get(namespace).cloned()
    }

    fn secret_keys(&self, namespace: &str, name: &str) -> Option<Arc<[String]>> {
        self.secrets.get(namespace)?.get(name).cloned()
    }
}
