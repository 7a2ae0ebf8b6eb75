//! `--config-dir` (and `policy test`'s inputs): Ingestors, IngestorPolicies, Secrets and
//! Namespaces read from YAML or JSON files, standing in for the cluster in `dev`.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime},
};

use base64::{Engine, engine::general_purpose::STANDARD};
use serde_json::Value;
use zen_admission::{Admission, StaticCluster};

use crate::process::LiveCluster;
use zen_crds::{Ingestor, IngestorPolicy, IngestorStatus, manifest};
use zen_ingest::{
    endpoint::Problem,
    status::{self, Events},
};

/// What a set of files holds.
#[derive(Debug, Default)]
pub struct Config {
    pub ingestors: Vec<Ingestor>,
    pub policies: Vec<IngestorPolicy>,
    pub cluster: StaticCluster,
    /// Secret values, for the ingest endpoints' signature checks (never logged).
    pub secret_values: zen_ingest::SecretValues,
    /// One readable line per file or document that could not be used.
    pub errors: Vec<String>,
}

impl Config {
    /// Adds what `file` holds.
    pub fn add_file(&mut self, file: &Path) {
        match manifest::load_file(file) {
            Ok(objects) => {
                for o in objects {
                    match o {
                        manifest::Object::Ingestor(i) => self.ingestors.push(*i),
                        manifest::Object::IngestorPolicy(p) => self.policies.push(*p),
                        manifest::Object::Other(v) => self.add_other(&v),
                    }
                }
            }
            Err(e) => self.errors.push(e.to_string()),
        }
    }

    /// Adds one object as the cluster serves it (apiVersion and kind set).
    pub fn add_value(&mut self, v: &Value) {
        match manifest::object(v) {
            Ok(manifest::Object::Ingestor(i)) => self.ingestors.push(*i),
            Ok(manifest::Object::IngestorPolicy(p)) => self.policies.push(*p),
            Ok(manifest::Object::Other(v)) => self.add_other(&v),
            Err(e) => self.errors.push(format!(
                "{}/{}: {e}",
                v["metadata"]["namespace"].as_str().unwrap_or(""),
                v["metadata"]["name"].as_str().unwrap_or("")
            )),
        }
    }

    /// Makes this the configuration in force: the policy set, the Namespaces and Secrets
    /// admission consults, and the served webhook endpoints. What cannot be used is logged.
    /// Returns each Ingestor with the status it should now have.
    pub fn apply(
        self,
        admission: &Admission,
        cluster: &LiveCluster,
        endpoints: &zen_ingest::Endpoints,
        events: Events,
    ) -> Vec<(Ingestor, IngestorStatus)> {
        for e in &self.errors {
            tracing::warn!(error = %e, "configuration skipped");
        }
        for (name, errors) in admission.set_policies(&self.policies) {
            for e in errors {
                tracing::warn!(policy = %name, error = %e, "IngestorPolicy left out");
            }
        }
        cluster.replace(self.cluster);
        let mut problems: BTreeMap<String, Vec<Problem>> = BTreeMap::new();
        for (ingestor, problem) in endpoints.load(&self.ingestors, &self.secret_values) {
            tracing::warn!(%ingestor, reason = problem.reason, error = %problem.message, "Ingestor not served");
            problems.entry(ingestor).or_default().push(problem);
        }
        tracing::info!(
            ingestors = self.ingestors.len(),
            policies = self.policies.len(),
            endpoints = ?endpoints.paths(),
            "configuration in force"
        );
        self.ingestors
            .into_iter()
            .map(|i| {
                let key = format!(
                    "{}/{}",
                    i.metadata.namespace.as_deref().unwrap_or("default"),
                    i.metadata.name.as_deref().unwrap_or_default()
                );
                let found = problems.get(&key).map_or(&[][..], Vec::as_slice);
                let status = status::desired(&i, found, endpoints, events, i.status.as_ref());
                (i, status)
            })
            .collect()
    }

    /// Secrets (their data keys, never values) and Namespaces (their labels).
    pub fn add_other(&mut self, v: &Value) {
        let meta = |field: &str| {
            v.pointer(&format!("/metadata/{field}"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        match (
            v.get("apiVersion").and_then(Value::as_str),
            v.get("kind").and_then(Value::as_str),
        ) {
            (Some("v1"), Some("Secret")) => {
                let mut keys: Vec<String> = ["data", "stringData"]
                    .iter()
                    .filter_map(|f| v.get(*f).and_then(Value::as_object))
                    .flat_map(|m| m.keys().cloned())
                    .collect();
                keys.sort();
                keys.dedup();
                let ns = Some(meta("namespace"))
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| "default".into());
                let mut values = BTreeMap::new();
                for (k, v) in v
                    .get("data")
                    .and_then(Value::as_object)
                    .into_iter()
                    .flatten()
                {
                    match v.as_str().map(|b64| STANDARD.decode(b64)) {
                        Some(Ok(bytes)) => {
                            values.insert(k.clone(), bytes);
                        }
                        _ => self.errors.push(format!(
                            "Secret {ns}/{}: data.{k} is not base64",
                            meta("name")
                        )),
                    }
                }
                for (k, v) in v
                    .get("stringData")
                    .and_then(Value::as_object)
                    .into_iter()
                    .flatten()
                {
                    if let Some(text) = v.as_str() {
                        values.insert(k.clone(), text.as_bytes().to_vec());
                    }
                }
                self.secret_values
                    .insert((ns.clone(), meta("name")), values);
                self.cluster.insert_secret(ns, meta("name"), keys);
            }
            (Some("v1"), Some("Namespace")) => {
                let labels: BTreeMap<String, String> = v
                    .pointer("/metadata/labels")
                    .and_then(Value::as_object)
                    .map(|m| {
                        m.iter()
                            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                            .collect()
                    })
                    .unwrap_or_default();
                self.cluster.insert_namespace(meta("name"), labels);
            }
            _ => {}
        }
    }
}

/// The manifest files of a directory (not recursive), in name order.
pub fn files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
        })
        .collect();
    out.sort();
    Ok(out)
}

/// Reads every manifest of a directory.
pub fn load(dir: &Path) -> Config {
    let mut config = Config::default();
    match files(dir) {
        Ok(files) => files.iter().for_each(|f| config.add_file(f)),
        Err(e) => config.errors.push(format!("{}: {e}", dir.display())),
    }
    config
}

/// How often the directory is looked at for changes.
const POLL: Duration = Duration::from_millis(500);

/// Names, sizes and modification times: a change to any file changes this.
fn fingerprint(dir: &Path) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    files(dir)
        .unwrap_or_default()
        .into_iter()
        .map(|p| {
            let meta = std::fs::metadata(&p).ok();
            let len = meta.as_ref().map_or(0, |m| m.len());
            let modified = meta.and_then(|m| m.modified().ok());
            (p, len, modified)
        })
        .collect()
}

/// Loads `dir` into `admission`, `cluster` and the ingest `endpoints` now and again
/// whenever its files change.
pub async fn watch(
    dir: PathBuf,
    admission: Arc<Admission>,
    cluster: Arc<LiveCluster>,
    endpoints: Arc<zen_ingest::Endpoints>,
) {
    let mut seen = None;
    loop {
        let now = fingerprint(&dir);
        if seen.as_ref() != Some(&now) {
            let config = load(&dir);
            // No cluster to write an Ingestor's status to: the log says it.
            for (i, status) in config.apply(&admission, &cluster, &endpoints, Events::NotAvailable)
            {
                if let Some(ready) = status.conditions.first() {
                    tracing::info!(
                        ingestor = %format!("{}/{}", i.metadata.namespace.as_deref().unwrap_or("default"), i.metadata.name.as_deref().unwrap_or_default()),
                        ready = %ready.status, reason = %ready.reason, message = %ready.message,
                        "Ingestor status"
                    );
                }
            }
            tracing::info!(dir = %dir.display(), "config directory loaded");
            seen = Some(now);
        }
        tokio::time::sleep(POLL).await;
    }
}
