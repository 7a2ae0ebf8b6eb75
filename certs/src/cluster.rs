//! The self-managed PKI in a cluster: kept in the Secrets `zen-watcher-ca` and
//! `zen-watcher-tls`, and published as the `caBundle` of the APIService and of every
//! webhook of the `zen-watcher` webhook configurations.

use std::sync::Mutex;

use base64::{Engine, engine::general_purpose::STANDARD};
use serde_json::{Value, json};
use zen_kube::{Client, KubeError};

use crate::{
    CertError,
    manager::Publisher,
    pki::{CA_SECRET, Pki, SecretData, Secrets, TLS_SECRET},
    store::{CertStore, StoreFuture},
};

pub const API_SERVICE: &str = "v1alpha1.zen.watcher.io";
pub const WEBHOOK_CONFIGURATION: &str = "zen-watcher";

fn kube(e: KubeError) -> CertError {
    CertError::Issue(format!("kube-apiserver: {e}"))
}

/// A Secret's data, decoded; values that are not UTF-8 PEM text are an error naming them.
pub fn secret_data(secret: &Value) -> Result<SecretData, CertError> {
    let name = secret["metadata"]["name"].as_str().unwrap_or_default();
    let mut out = SecretData::new();
    for (k, v) in secret["data"].as_object().into_iter().flatten() {
        let bytes = v
            .as_str()
            .and_then(|b64| STANDARD.decode(b64).ok())
            .ok_or_else(|| CertError::Invalid {
                path: format!("{name}/{k}"),
                message: "not base64".into(),
            })?;
        let text = String::from_utf8(bytes).map_err(|_| CertError::Invalid {
            path: format!("{name}/{k}"),
            message: "not text".into(),
        })?;
        out.insert(k.clone(), text);
    }
    Ok(out)
}

/// The Secret object for `data` (type `kubernetes.io/tls` for the serving Secret, so other
/// tools recognise it).
pub fn secret_object(
    namespace: &str,
    name: &str,
    data: &SecretData,
    resource_version: Option<&str>,
) -> Value {
    let encoded: serde_json::Map<String, Value> = data
        .iter()
        .map(|(k, v)| (k.clone(), json!(STANDARD.encode(v))))
        .collect();
    let mut metadata = json!({
        "name": name,
        "namespace": namespace,
        "labels": {"app.kubernetes.io/name": "zen-watcher", "app.kubernetes.io/component": "certificates"},
    });
    if let Some(rv) = resource_version {
        metadata["resourceVersion"] = json!(rv);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": if name == TLS_SECRET { "kubernetes.io/tls" } else { "Opaque" },
        "data": encoded,
    })
}

/// The two Secrets in `namespace`. Writes carry the resourceVersion last read, so two
/// replicas rotating at once cannot both win: the loser's write fails and it reloads.
pub struct SecretStore {
    client: Client,
    namespace: String,
    versions: Mutex<[Option<String>; 2]>,
}

impl SecretStore {
    pub fn new(client: Client, namespace: &str) -> Self {
        Self {
            client,
            namespace: namespace.to_owned(),
            versions: Mutex::new([None, None]),
        }
    }

    fn path(&self, name: &str) -> String {
        format!("/api/v1/namespaces/{}/secrets/{name}", self.namespace)
    }
}

impl CertStore for SecretStore {
    fn load(&self) -> StoreFuture<'_, Secrets> {
        Box::pin(async move {
            let mut out = [None, None];
            let mut versions = [None, None];
            for (i, name) in [CA_SECRET, TLS_SECRET].into_iter().enumerate() {
                match self.client.get(&self.path(name)).await {
                    Ok(secret) => {
                        versions[i] = secret["metadata"]["resourceVersion"]
                            .as_str()
                            .map(str::to_owned);
                        out[i] = Some(secret_data(&secret)?);
                    }
                    Err(e) if Client::is_not_found(&e) => {}
                    Err(e) => return Err(kube(e)),
                }
            }
            *self.versions.lock().unwrap_or_else(|p| p.into_inner()) = versions;
            let [ca, tls] = out;
            Ok(Secrets { ca, tls })
        })
    }

    fn save<'a>(&'a self, secrets: &'a Secrets) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let versions = self
                .versions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            for (i, (name, data)) in [(CA_SECRET, &secrets.ca), (TLS_SECRET, &secrets.tls)]
                .into_iter()
                .enumerate()
            {
                let Some(data) = data else { continue };
                let written = match &versions[i] {
                    Some(rv) => {
                        let body = secret_object(&self.namespace, name, data, Some(rv));
                        self.client
                            .request(
                                http::Method::PUT,
                                &self.path(name),
                                Some((&body, "application/json")),
                            )
                            .await
                    }
                    None => {
                        let body = secret_object(&self.namespace, name, data, None);
                        self.client
                            .create(
                                &format!("/api/v1/namespaces/{}/secrets", self.namespace),
                                &body,
                            )
                            .await
                    }
                }
                .map_err(kube)?;
                self.versions.lock().unwrap_or_else(|p| p.into_inner())[i] =
                    written["metadata"]["resourceVersion"]
                        .as_str()
                        .map(str::to_owned);
            }
            Ok(())
        })
    }
}

/// A JSON patch that sets every `caBundle` of an APIService or webhook configuration to
/// `bundle_b64`, or `None` when all are in step. Each change is guarded by a `test` of what
/// it addresses, so a concurrent edit of the object makes the patch fail instead of
/// patching the wrong webhook.
pub fn ca_bundle_patch(object: &Value, bundle_b64: &str) -> Option<Value> {
    let mut ops = Vec::new();
    match object["kind"].as_str() {
        Some("APIService") if object["spec"]["caBundle"].as_str() != Some(bundle_b64) => {
            ops.push(json!({"op": "test", "path": "/metadata/name", "value": object["metadata"]["name"]}));
            ops.push(json!({"op": "add", "path": "/spec/caBundle", "value": bundle_b64}));
        }
        Some("ValidatingWebhookConfiguration" | "MutatingWebhookConfiguration") => {
            for (i, webhook) in object["webhooks"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
            {
                if webhook["clientConfig"]["caBundle"].as_str() != Some(bundle_b64) {
                    ops.push(json!({"op": "test", "path": format!("/webhooks/{i}/name"), "value": webhook["name"]}));
                    ops.push(json!({"op": "add", "path": format!("/webhooks/{i}/clientConfig/caBundle"), "value": bundle_b64}));
                }
            }
        }
        _ => {}
    }
    (!ops.is_empty()).then_some(Value::Array(ops))
}

/// Publishes the CA bundle into the registrations kube-apiserver verifies zen-watcher with.
pub struct CaBundlePublisher {
    client: Client,
}

impl CaBundlePublisher {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// Puts `bundle_pem` into every caBundle that differs; returns how many objects changed.
    /// Missing registrations are skipped (not installed yet, or installed without them).
    pub async fn inject(&self, bundle_pem: &str) -> Result<usize, CertError> {
        let b64 = STANDARD.encode(bundle_pem);
        let mut changed = 0;
        for path in [
            format!("/apis/apiregistration.k8s.io/v1/apiservices/{API_SERVICE}"),
            format!(
                "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/{WEBHOOK_CONFIGURATION}"
            ),
            format!(
                "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/{WEBHOOK_CONFIGURATION}"
            ),
        ] {
            let object = match self.client.get(&path).await {
                Ok(o) => o,
                Err(e) if Client::is_not_found(&e) => {
                    tracing::warn!(%path, "not found; its caBundle cannot be set");
                    continue;
                }
                Err(e) => return Err(kube(e)),
            };
            if let Some(patch) = ca_bundle_patch(&object, &b64) {
                self.client.json_patch(&path, &patch).await.map_err(kube)?;
                tracing::info!(%path, "patched caBundle");
                changed += 1;
            }
        }
        Ok(changed)
    }
}

impl Publisher for CaBundlePublisher {
    fn publish<'a>(&'a self, pki: &'a Pki) -> StoreFuture<'a, ()> {
        Box::pin(async move { self.inject(&pki.bundle()).await.map(|_| ()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETUP: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/testdata/kube-apiserver-1.28/setup"
    );

    fn recorded(file: &str) -> Value {
        serde_json::from_str(&std::fs::read_to_string(format!("{SETUP}/{file}")).unwrap()).unwrap()
    }

    fn apply(object: &Value, patch: &Value) -> Value {
        let mut out = object.clone();
        let patch: json_patch::Patch = serde_json::from_value(patch.clone()).unwrap();
        json_patch::patch(&mut out, &patch).unwrap();
        out
    }

    #[test]
    fn the_recorded_registrations_get_the_new_bundle_and_nothing_else_changes() {
        let b64 = STANDARD.encode("-----BEGIN CERTIFICATE-----\nnew\n-----END CERTIFICATE-----\n");
        let mut objects = vec![recorded("setup-apiservice.json")];
        objects.extend(
            recorded("setup-webhooks.json")
                .as_array()
                .unwrap()
                .iter()
                .cloned(),
        );
        for object in objects {
            let patch =
                ca_bundle_patch(&object, &b64).expect("the recorded caBundle is another CA's");
            let patched = apply(&object, &patch);
            // In step now: nothing more to do.
            assert_eq!(ca_bundle_patch(&patched, &b64), None);
            let mut expected = object.clone();
            if let Some(spec) = expected.get_mut("spec") {
                spec["caBundle"] = json!(b64);
            }
            for w in expected
                .get_mut("webhooks")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                w["clientConfig"]["caBundle"] = json!(b64);
            }
            assert_eq!(patched, expected);
        }
    }

    #[test]
    fn a_webhook_list_changed_since_it_was_read_fails_the_patch() {
        let webhooks = recorded("setup-webhooks.json");
        let object = &webhooks[0];
        let patch = ca_bundle_patch(object, "bmV3").unwrap();
        let mut changed = object.clone();
        changed["webhooks"][0]["name"] = json!("someone.else.io");
        let patch: json_patch::Patch = serde_json::from_value(patch).unwrap();
        assert!(json_patch::patch(&mut changed, &patch).is_err());
    }

    #[test]
    fn secrets_round_trip_through_their_objects() {
        let data = SecretData::from([("tls.crt".to_owned(), "pem".to_owned())]);
        let object = secret_object("zen-system", TLS_SECRET, &data, Some("42"));
        assert_eq!(object["type"], "kubernetes.io/tls");
        assert_eq!(object["metadata"]["resourceVersion"], "42");
        assert_eq!(secret_data(&object).unwrap(), data);
        let mut bad = object.clone();
        bad["data"]["tls.crt"] = json!("%%%");
        assert!(
            secret_data(&bad)
                .unwrap_err()
                .to_string()
                .contains("zen-watcher-tls/tls.crt")
        );
    }
}
