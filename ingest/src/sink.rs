//! Where Observations go: the aggregated API's own create and status paths, called in
//! process, so they are validated, stored and watched like any other write. A create is
//! answered only once it is durable.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use zen_apiserver::server::ApiServer;

/// Attempts at a dedup write racing other writers of the same Observation.
const RETRIES: usize = 5;

#[derive(Debug, PartialEq, Eq)]
pub enum Recorded {
    Created {
        name: String,
    },
    /// A repeat inside the dedup window: the Observation's count is now `count`.
    Folded {
        name: String,
        count: u64,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The mapping produced an Observation the schema refuses.
    #[error("{0}")]
    Invalid(String),
    #[error("storing the Observation failed ({status}): {message}")]
    Store { status: u16, message: String },
}

#[derive(Clone)]
pub struct ApiSink {
    api: ApiServer,
}

struct Reply {
    status: StatusCode,
    body: Value,
}

/// Now, as Kubernetes writes times (RFC 3339, whole seconds).
pub(crate) fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// The name of the Observation a dedup key folds into: stable, so every writer (and every
/// replica, and the server after a restart) finds the same object.
pub fn dedup_name(ingestor: &str, namespace: &str, key: &str) -> String {
    let mut h = Sha256::new();
    for part in [namespace, ingestor, key] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    let prefix: String = ingestor.chars().take(40).collect();
    format!(
        "{}-{}",
        prefix.trim_end_matches('-'),
        crate::pipeline::hex(&h.finalize()[..8])
    )
}

impl ApiSink {
    pub fn new(api: ApiServer) -> Self {
        Self { api }
    }

    /// The store under the API, for what ingest keeps beside Observations (delivery ids).
    pub fn store(&self) -> std::sync::Arc<dyn zen_store::Store> {
        self.api.store()
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Reply, SinkError> {
        let bytes = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json")
            .body(Full::new(bytes))
            .map_err(|e| SinkError::Store {
                status: 500,
                message: e.to_string(),
            })?;
        let resp = self.api.handle(req).await;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        Ok(Reply {
            status,
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        })
    }

    fn failed(reply: &Reply) -> SinkError {
        let message = reply.body["message"].as_str().unwrap_or("").to_owned();
        if reply.status == StatusCode::UNPROCESSABLE_ENTITY {
            SinkError::Invalid(message)
        } else {
            SinkError::Store {
                status: reply.status.as_u16(),
                message,
            }
        }
    }

    /// The newest `status.lastSeen` among the Observations `ingestor` stored in `namespace`.
    pub async fn newest_last_seen(
        &self,
        namespace: &str,
        ingestor: &str,
    ) -> Result<Option<i64>, SinkError> {
        let reply = self
            .call(
                Method::GET,
                &format!(
                    "/apis/zen.watcher.io/v1alpha1/namespaces/{namespace}/observations?fieldSelector=spec.ingestor%3D{ingestor}"
                ),
                None,
            )
            .await?;
        if reply.status != StatusCode::OK {
            return Err(Self::failed(&reply));
        }
        Ok(reply.body["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|o| o.pointer("/status/lastSeen").and_then(Value::as_str))
            .filter_map(|t| {
                time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
            })
            .map(|t| t.unix_timestamp())
            .max())
    }

    /// Stores one Observation of `ingestor` in `namespace`, or folds it into the one its
    /// dedup key names when that was last seen inside the window.
    pub async fn record(
        &self,
        namespace: &str,
        ingestor: &str,
        spec: Value,
        dedup: Option<(String, Duration)>,
    ) -> Result<Recorded, SinkError> {
        let collection =
            format!("/apis/zen.watcher.io/v1alpha1/namespaces/{namespace}/observations");
        let Some((key, window)) = dedup else {
            let obj = json!({
                "apiVersion": "zen.watcher.io/v1alpha1", "kind": "Observation",
                "metadata": {"generateName": format!("{ingestor}-"), "namespace": namespace},
                "spec": spec,
            });
            let reply = self.call(Method::POST, &collection, Some(&obj)).await?;
            return match reply.status {
                StatusCode::CREATED => Ok(Recorded::Created {
                    name: reply.body["metadata"]["name"]
                        .as_str()
                        .unwrap_or("")
                        .to_owned(),
                }),
                _ => Err(Self::failed(&reply)),
            };
        };
        let name = dedup_name(ingestor, namespace, &key);
        let item = format!("{collection}/{name}");
        let obj = json!({
            "apiVersion": "zen.watcher.io/v1alpha1", "kind": "Observation",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        });
        let mut last = None;
        for _ in 0..RETRIES {
            let reply = self.call(Method::POST, &collection, Some(&obj)).await?;
            match reply.status {
                StatusCode::CREATED => return Ok(Recorded::Created { name }),
                StatusCode::CONFLICT => {}
                _ => return Err(Self::failed(&reply)),
            }
            // It exists: fold into it if it was seen inside the window, else replace it.
            let current = self.call(Method::GET, &item, None).await?;
            if current.status == StatusCode::NOT_FOUND {
                continue;
            }
            if current.status != StatusCode::OK {
                return Err(Self::failed(&current));
            }
            let mut current = current.body;
            let last_seen = current["status"]["lastSeen"]
                .as_str()
                .and_then(|t| {
                    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .map(|t| t.unix_timestamp())
                .unwrap_or(0);
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            let within = u64::try_from(now - last_seen).is_ok_and(|age| age <= window.as_secs());
            if within {
                let count = current["status"]["count"].as_u64().unwrap_or(1) + 1;
                current["status"]["count"] = json!(count);
                current["status"]["lastSeen"] = json!(now_rfc3339());
                let reply = self
                    .call(Method::PUT, &format!("{item}/status"), Some(&current))
                    .await?;
                match reply.status {
                    StatusCode::OK => return Ok(Recorded::Folded { name, count }),
                    StatusCode::CONFLICT | StatusCode::NOT_FOUND => last = Some(reply),
                    _ => return Err(Self::failed(&reply)),
                }
            } else {
                // The earlier occurrence is over: this one starts afresh under the same name.
                let rv = current["metadata"]["resourceVersion"].clone();
                let options = json!({"kind": "DeleteOptions", "apiVersion": "v1",
                                     "preconditions": {"resourceVersion": rv}});
                let reply = self.call(Method::DELETE, &item, Some(&options)).await?;
                match reply.status {
                    StatusCode::OK | StatusCode::CONFLICT | StatusCode::NOT_FOUND => {}
                    _ => return Err(Self::failed(&reply)),
                }
            }
        }
        Err(last.map(|r| Self::failed(&r)).unwrap_or(SinkError::Store {
            status: 409,
            message: "too many concurrent writers of one deduplicated Observation".into(),
        }))
    }
}
