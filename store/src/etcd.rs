//! The store on etcd, the engine Kubernetes itself runs on, so several replicas serve one
//! set of objects.
//!
//! etcd's revision is the resourceVersion. Writes are transactions that compare the key's
//! create or mod revision, so a lost race is a `Conflict`, never a silent overwrite. Lists
//! are etcd range reads (paginated by key, at one revision). Every replica keeps one etcd
//! watch on its key prefix and feeds the same [`Hub`] the embedded store uses, so a write on
//! any replica reaches the watchers of all of them.
//!
//! etcd is spoken to through its JSON gateway (`/v3/kv/...`, `/v3/watch`), which every etcd
//! since 3.4 serves on the client port: no gRPC stack or `protoc` is needed to build.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use base64::{Engine, engine::general_purpose::STANDARD};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::{
    BoxFuture, ListOptions, ListResult, ObjectKey, Prefix, Result, Store, StoreError, Versioned,
    watch::{Event, EventKind, Hub, HubLimits, Watcher},
};

/// How long one etcd request may take before the API answers 503.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause before the watch stream is opened again after it broke.
const WATCH_BACKOFF: Duration = Duration::from_millis(500);
/// Largest etcd answer read (a page of a list; values are capped by the API far below).
const MAX_RESPONSE: usize = 256 * 1024 * 1024;
/// Idle connections kept per store.
const POOL: usize = 16;

/// Client certificates and CA for etcd over TLS (`--etcd-cafile`, `--etcd-certfile`,
/// `--etcd-keyfile`), as PEM text.
#[derive(Clone, Default)]
pub struct EtcdTls {
    pub ca_pem: Option<String>,
    pub cert_pem: Option<String>,
    pub key_pem: Option<String>,
}

#[derive(Clone)]
pub struct EtcdConfig {
    /// `http://host:port` or `https://host:port`, tried in order.
    pub endpoints: Vec<String>,
    /// Every key starts with this (default `/zen-watcher/`).
    pub prefix: String,
    pub tls: EtcdTls,
}

impl EtcdConfig {
    /// Reads `http://HOST:PORT[,…]` (the part of `--store etcd:…` after `etcd:`).
    pub fn parse(endpoints: &str) -> Result<Self> {
        let endpoints: Vec<String> = endpoints
            .split(',')
            .map(|e| e.trim().trim_end_matches('/').to_owned())
            .filter(|e| !e.is_empty())
            .collect();
        if endpoints.is_empty() {
            return Err(StoreError::Internal(
                "etcd: no endpoints given (etcd:http://HOST:PORT[,...])".into(),
            ));
        }
        for e in &endpoints {
            let uri: http::Uri = e
                .parse()
                .map_err(|err| StoreError::Internal(format!("etcd endpoint {e:?}: {err}")))?;
            if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
                return Err(StoreError::Internal(format!(
                    "etcd endpoint {e:?}: expected http://HOST:PORT or https://HOST:PORT"
                )));
            }
        }
        Ok(Self {
            endpoints,
            prefix: "/zen-watcher/".into(),
            tls: EtcdTls::default(),
        })
    }
}

/// The connection side of the store: HTTP/1.1 to the JSON gateway, with a small pool of
/// kept-alive connections and failover across endpoints.
struct Connection {
    endpoints: Vec<(http::Uri, String)>,
    tls: Option<(tokio_rustls::TlsConnector, Option<String>)>,
    pool: Mutex<Vec<(usize, SendRequest<Full<Bytes>>)>>,
    /// The endpoint that answered last; tried first.
    preferred: AtomicU64,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("etcd: {e}"))
}

impl Connection {
    fn new(config: &EtcdConfig) -> Result<Self> {
        let endpoints = config
            .endpoints
            .iter()
            .map(|e| {
                let uri: http::Uri = e
                    .parse()
                    .map_err(|err| StoreError::Internal(format!("etcd endpoint {e:?}: {err}")))?;
                let authority = uri.authority().map(|a| a.to_string()).unwrap_or_default();
                Ok((uri, authority))
            })
            .collect::<Result<Vec<_>>>()?;
        let tls = if endpoints
            .iter()
            .any(|(u, _)| u.scheme_str() == Some("https"))
        {
            Some((tls_connector(&config.tls)?, None))
        } else {
            None
        };
        Ok(Self {
            endpoints,
            tls,
            pool: Mutex::new(Vec::new()),
            preferred: AtomicU64::new(0),
        })
    }

    async fn connect(&self, index: usize) -> Result<SendRequest<Full<Bytes>>> {
        let (uri, authority) = &self.endpoints[index];
        let host = uri.host().unwrap_or_default().to_owned();
        let port = uri
            .port_u16()
            .unwrap_or(if uri.scheme_str() == Some("https") {
                443
            } else {
                80
            });
        let tcp = tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port))
            .await
            .map_err(|e| unavailable(format!("connecting to {authority}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let io: Box<dyn Io> = match (&self.tls, uri.scheme_str()) {
            (Some((connector, _)), Some("https")) => {
                let name = rustls::pki_types::ServerName::try_from(
                    host.trim_matches(['[', ']']).to_owned(),
                )
                .map_err(|e| StoreError::Internal(format!("etcd host {host:?}: {e}")))?;
                Box::new(
                    connector
                        .connect(name, tcp)
                        .await
                        .map_err(|e| unavailable(format!("TLS to {authority}: {e}")))?,
                )
            }
            _ => Box::new(tcp),
        };
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| unavailable(format!("{authority}: {e}")))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    /// A ready connection to some endpoint, pooled or new; the preferred endpoint first.
    async fn checkout(&self) -> Result<(usize, SendRequest<Full<Bytes>>)> {
        loop {
            let pooled = self.pool.lock().unwrap_or_else(|p| p.into_inner()).pop();
            match pooled {
                Some((i, mut s)) => {
                    if s.ready().await.is_ok() {
                        return Ok((i, s));
                    }
                }
                None => break,
            }
        }
        let n = self.endpoints.len();
        let first = self.preferred.load(Ordering::Relaxed) as usize % n;
        let mut last = None;
        for i in (0..n).map(|k| (first + k) % n) {
            match self.connect(i).await {
                Ok(s) => {
                    self.preferred.store(i as u64, Ordering::Relaxed);
                    return Ok((i, s));
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| unavailable("no endpoints")))
    }

    fn request(
        &self,
        index: usize,
        path: &str,
        body: &Value,
    ) -> Result<http::Request<Full<Bytes>>> {
        let (uri, authority) = &self.endpoints[index];
        let scheme = uri.scheme_str().unwrap_or("http");
        http::Request::post(format!("{scheme}://{authority}{path}"))
            .header(http::header::HOST, authority.as_str())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| StoreError::Internal(e.to_string()))
    }

    /// One gateway call; its JSON answer, or the error etcd gave.
    async fn call<T: DeserializeOwned>(&self, path: &str, body: &Value) -> Result<T> {
        tokio::time::timeout(REQUEST_TIMEOUT, self.call_once(path, body))
            .await
            .map_err(|_| unavailable(format!("no answer within {REQUEST_TIMEOUT:?}")))?
    }

    async fn call_once<T: DeserializeOwned>(&self, path: &str, body: &Value) -> Result<T> {
        let (index, mut sender) = self.checkout().await?;
        let response = sender
            .send_request(self.request(index, path, body)?)
            .await
            .map_err(unavailable)?;
        let status = response.status();
        let bytes = http_body_util::Limited::new(response.into_body(), MAX_RESPONSE)
            .collect()
            .await
            .map_err(unavailable)?
            .to_bytes();
        {
            let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
            if pool.len() < POOL {
                pool.push((index, sender));
            }
        }
        if !status.is_success() {
            let answer: Value = serde_json::from_slice(&bytes).unwrap_or_default();
            return Err(gateway_error(&answer));
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| unavailable(format!("unreadable answer ({status}): {e}")))
    }

    /// A streaming call (the watch): the response, whose body is read as it comes.
    async fn stream(&self, path: &str, body: &Value) -> Result<hyper::body::Incoming> {
        let (index, mut sender) = tokio::time::timeout(REQUEST_TIMEOUT, self.checkout())
            .await
            .map_err(|_| unavailable("connect timeout"))??;
        let response = tokio::time::timeout(
            REQUEST_TIMEOUT,
            sender.send_request(self.request(index, path, body)?),
        )
        .await
        .map_err(|_| unavailable("watch: no answer"))?
        .map_err(unavailable)?;
        if !response.status().is_success() {
            return Err(unavailable(format!("watch answered {}", response.status())));
        }
        Ok(response.into_body())
    }
}

fn tls_connector(tls: &EtcdTls) -> Result<tokio_rustls::TlsConnector> {
    let bad = |what: &str, e: &dyn std::fmt::Display| {
        StoreError::Internal(format!("etcd TLS {what}: {e}"))
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    if let Some(ca) = &tls.ca_pem {
        for cert in rustls_pemfile::certs(&mut ca.as_bytes()) {
            roots
                .add(cert.map_err(|e| bad("CA file", &e))?)
                .map_err(|e| bad("CA file", &e))?;
        }
    }
    if roots.is_empty() {
        return Err(StoreError::Internal(
            "etcd over https needs --etcd-cafile (the CA etcd's certificate is issued by)".into(),
        ));
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad("setup", &e))?
        .with_root_certificates(roots);
    let config = match (&tls.cert_pem, &tls.key_pem) {
        (Some(cert), Some(key)) => {
            let chain = rustls_pemfile::certs(&mut cert.as_bytes())
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| bad("certificate file", &e))?;
            let key = rustls_pemfile::private_key(&mut key.as_bytes())
                .map_err(|e| bad("key file", &e))?
                .ok_or_else(|| bad("key file", &"no private key found"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| bad("client certificate", &e))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(StoreError::Internal(
                "--etcd-certfile and --etcd-keyfile go together".into(),
            ));
        }
    };
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// etcd's error answer (`{"error": ..., "code": ..., "message": ...}`) as a store error.
fn gateway_error(answer: &Value) -> StoreError {
    let message = answer["message"]
        .as_str()
        .or_else(|| answer["error"].as_str())
        .unwrap_or("unknown error")
        .to_owned();
    if message.contains("compacted") {
        StoreError::Expired {
            requested: 0,
            oldest: 0,
        }
    } else if message.contains("future revision") {
        StoreError::FutureRevision {
            requested: 0,
            current: 0,
        }
    } else {
        StoreError::Unavailable(format!("etcd: {message}"))
    }
}

fn b64(s: &[u8]) -> String {
    STANDARD.encode(s)
}

/// etcd's int64 fields arrive as JSON strings (proto3 JSON), absent when zero.
fn int(v: &Value) -> u64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_u64().unwrap_or(0),
        _ => 0,
    }
}

fn bytes_of(v: &Value) -> Result<Bytes> {
    decode_text(v.as_str().unwrap_or(""))
}

fn decode_text(text: &str) -> Result<Bytes> {
    STANDARD
        .decode(text)
        .map(Bytes::from)
        .map_err(|e| StoreError::Internal(format!("etcd: undecodable value: {e}")))
}

/// What every etcd answer carries: the revision it was served at.
trait Answer {
    fn revision(&self) -> u64;
}

impl Answer for Value {
    fn revision(&self) -> u64 {
        int(&self["header"]["revision"])
    }
}

/// int64 as proto3 JSON writes it (a string), or a number.
fn int64<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Int {
        Text(String),
        Number(u64),
    }
    Ok(match Int::deserialize(d)? {
        Int::Text(t) => t.parse().map_err(serde::de::Error::custom)?,
        Int::Number(n) => n,
    })
}

#[derive(Deserialize, Default)]
struct Header {
    #[serde(default, deserialize_with = "int64")]
    revision: u64,
}

/// A range answer, read without building a JSON tree (a list of 10,000 is megabytes).
#[derive(Deserialize)]
struct RangeAnswer {
    #[serde(default)]
    header: Header,
    #[serde(default)]
    kvs: Vec<KvText>,
    #[serde(default)]
    more: bool,
}

impl Answer for RangeAnswer {
    fn revision(&self) -> u64 {
        self.header.revision
    }
}

#[derive(Deserialize)]
struct KvText {
    key: String,
    #[serde(default)]
    value: String,
    #[serde(default, deserialize_with = "int64")]
    mod_revision: u64,
}

/// A stored key-value of etcd's answer.
struct Kv {
    key: String,
    value: Bytes,
    create_revision: u64,
    mod_revision: u64,
}

fn kv(v: &Value) -> Result<Kv> {
    let key = String::from_utf8(bytes_of(&v["key"])?.to_vec())
        .map_err(|e| StoreError::Internal(format!("etcd: key is not UTF-8: {e}")))?;
    Ok(Kv {
        key,
        value: bytes_of(&v["value"])?,
        create_revision: int(&v["create_revision"]),
        mod_revision: int(&v["mod_revision"]),
    })
}

pub struct EtcdStore {
    conn: Arc<Connection>,
    prefix: String,
    hub: Arc<Hub>,
    revision: Arc<AtomicU64>,
    healthy: Arc<AtomicBool>,
    watch: tokio::task::JoinHandle<()>,
}

impl Drop for EtcdStore {
    fn drop(&mut self) {
        self.watch.abort();
    }
}

impl EtcdStore {
    /// Connects (one request, so a wrong address fails at start) and starts following the
    /// prefix.
    pub async fn connect(config: EtcdConfig) -> Result<Self> {
        Self::connect_with(config, HubLimits::default()).await
    }

    pub async fn connect_with(config: EtcdConfig, limits: HubLimits) -> Result<Self> {
        let conn = Arc::new(Connection::new(&config)?);
        let answer: Value = conn
            .call("/v3/kv/range", &json!({"key": b64(b"\0"), "limit": 1}))
            .await?;
        let revision = int(&answer["header"]["revision"]);
        let hub = Arc::new(Hub::new(revision, limits));
        let revision = Arc::new(AtomicU64::new(revision));
        let healthy = Arc::new(AtomicBool::new(true));
        let watch = tokio::spawn(follow(
            conn.clone(),
            config.prefix.clone(),
            hub.clone(),
            revision.clone(),
            healthy.clone(),
        ));
        Ok(Self {
            conn,
            prefix: config.prefix,
            hub,
            revision,
            healthy,
            watch,
        })
    }

    fn key(&self, key: &ObjectKey) -> String {
        format!("{}{}", self.prefix, key.encode())
    }

    fn object_key(&self, key: &str) -> Option<ObjectKey> {
        ObjectKey::decode(key.strip_prefix(&self.prefix)?)
    }

    /// Calls etcd, noting its revision and whether it answered.
    async fn call<T: DeserializeOwned + Answer>(&self, path: &str, body: &Value) -> Result<T> {
        match self.conn.call::<T>(path, body).await {
            Ok(answer) => {
                self.revision.fetch_max(answer.revision(), Ordering::AcqRel);
                self.healthy.store(true, Ordering::Release);
                Ok(answer)
            }
            Err(e @ StoreError::Unavailable(_)) => {
                self.healthy.store(false, Ordering::Release);
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// A transaction: `compare` on `key`, `success` ops, and a read of the key on failure.
    async fn txn(&self, key: &str, compare: Value, success: Value) -> Result<(bool, Value)> {
        let answer: Value = self
            .call(
                "/v3/kv/txn",
                &json!({
                    "compare": [compare],
                    "success": [success],
                    "failure": [{"request_range": {"key": b64(key.as_bytes())}}],
                }),
            )
            .await?;
        Ok((answer["succeeded"].as_bool().unwrap_or(false), answer))
    }

    /// Why a guarded write of `key` failed: it is absent, or it moved on.
    fn refused(answer: &Value, exists_expected: bool) -> Result<StoreError> {
        let current = answer["responses"][0]["response_range"]["kvs"]
            .as_array()
            .and_then(|kvs| kvs.first())
            .map(kv)
            .transpose()?;
        Ok(match current {
            None if exists_expected => StoreError::NotFound,
            None => StoreError::Internal("etcd: a create failed with no object present".into()),
            Some(_) if !exists_expected => StoreError::AlreadyExists,
            Some(k) => StoreError::Conflict {
                current: k.mod_revision,
            },
        })
    }
}

/// The comparison a guarded write of an existing key makes: its mod revision is `expected`,
/// or (none expected) it exists at all.
fn guard(key: &str, expected: Option<u64>) -> Value {
    match expected {
        Some(rev) => {
            json!({"key": b64(key.as_bytes()), "target": "MOD", "result": "EQUAL", "mod_revision": rev.to_string()})
        }
        None => {
            json!({"key": b64(key.as_bytes()), "target": "CREATE", "result": "GREATER", "create_revision": "0"})
        }
    }
}

/// The etcd range `[start, end)` of a prefix under the store's own prefix.
fn range(root: &str, prefix: &Prefix) -> (String, String) {
    let (start, end) = prefix.range();
    (format!("{root}{start}"), format!("{root}{end}"))
}

impl Store for EtcdStore {
    fn get<'a>(&'a self, key: &'a ObjectKey) -> BoxFuture<'a, Result<Option<Versioned>>> {
        Box::pin(async move {
            let answer: Value = self
                .call(
                    "/v3/kv/range",
                    &json!({"key": b64(self.key(key).as_bytes())}),
                )
                .await?;
            answer["kvs"]
                .as_array()
                .and_then(|kvs| kvs.first())
                .map(|v| {
                    kv(v).map(|k| Versioned {
                        value: k.value,
                        mod_revision: k.mod_revision,
                    })
                })
                .transpose()
        })
    }

    fn create(&self, key: ObjectKey, value: Bytes) -> BoxFuture<'_, Result<u64>> {
        Box::pin(async move {
            let k = self.key(&key);
            let (ok, answer) = self
                .txn(
                    &k,
                    json!({"key": b64(k.as_bytes()), "target": "CREATE", "result": "EQUAL", "create_revision": "0"}),
                    json!({"request_put": {"key": b64(k.as_bytes()), "value": b64(&value)}}),
                )
                .await?;
            if !ok {
                return Err(Self::refused(&answer, false)?);
            }
            Ok(int(&answer["header"]["revision"]))
        })
    }

    fn update(
        &self,
        key: ObjectKey,
        value: Bytes,
        expected: Option<u64>,
    ) -> BoxFuture<'_, Result<u64>> {
        Box::pin(async move {
            let k = self.key(&key);
            let (ok, answer) = self
                .txn(
                    &k,
                    guard(&k, expected),
                    json!({"request_put": {"key": b64(k.as_bytes()), "value": b64(&value)}}),
                )
                .await?;
            if !ok {
                return Err(Self::refused(&answer, true)?);
            }
            Ok(int(&answer["header"]["revision"]))
        })
    }

    fn delete(&self, key: ObjectKey, expected: Option<u64>) -> BoxFuture<'_, Result<(Bytes, u64)>> {
        Box::pin(async move {
            let k = self.key(&key);
            let (ok, answer) = self
                .txn(
                    &k,
                    guard(&k, expected),
                    json!({"request_delete_range": {"key": b64(k.as_bytes()), "prev_kv": true}}),
                )
                .await?;
            if !ok {
                return Err(Self::refused(&answer, true)?);
            }
            let prev = answer["responses"][0]["response_delete_range"]["prev_kvs"]
                .as_array()
                .and_then(|kvs| kvs.first())
                .map(kv)
                .transpose()?
                .ok_or(StoreError::NotFound)?;
            Ok((prev.value, int(&answer["header"]["revision"])))
        })
    }

    fn list(&self, prefix: Prefix, options: ListOptions) -> BoxFuture<'_, Result<ListResult>> {
        Box::pin(async move {
            let (start, end) = range(&self.prefix, &prefix);
            let from = match &options.start_after {
                // The first key after it: the key with a NUL byte appended.
                Some(after) => format!("{}\0", self.key(after)),
                None => start,
            };
            let mut request =
                json!({"key": b64(from.as_bytes()), "range_end": b64(end.as_bytes())});
            // etcd's limit is an int64; a larger one means no limit.
            if let Some(limit) = options.limit.filter(|l| i64::try_from(*l).is_ok()) {
                request["limit"] = json!(limit.to_string());
            }
            if let Some(rev) = options.at_revision.filter(|r| *r > 0) {
                request["revision"] = json!(rev.to_string());
            }
            let answer: RangeAnswer = match self.call("/v3/kv/range", &request).await {
                Err(StoreError::Expired { .. }) => {
                    return Err(StoreError::Expired {
                        requested: options.at_revision.unwrap_or(0),
                        oldest: self.current_revision(),
                    });
                }
                Err(StoreError::FutureRevision { .. }) => {
                    return Err(StoreError::FutureRevision {
                        requested: options.at_revision.unwrap_or(0),
                        current: self.current_revision(),
                    });
                }
                other => other?,
            };
            let mut items = Vec::with_capacity(answer.kvs.len());
            for kv in &answer.kvs {
                let key = decode_text(&kv.key)?;
                let Some(key) = std::str::from_utf8(&key)
                    .ok()
                    .and_then(|k| self.object_key(k))
                else {
                    continue;
                };
                items.push((
                    key,
                    Versioned {
                        value: decode_text(&kv.value)?,
                        mod_revision: kv.mod_revision,
                    },
                ));
            }
            let revision = options
                .at_revision
                .filter(|r| *r > 0)
                .unwrap_or(answer.header.revision);
            Ok(ListResult {
                items,
                revision,
                more: answer.more,
            })
        })
    }

    fn current_revision(&self) -> u64 {
        self.revision.load(Ordering::Acquire)
    }

    fn watch(&self, prefix: Prefix, from_revision: u64) -> Result<Watcher> {
        self.hub.subscribe(prefix, from_revision)
    }

    fn ready(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    fn shared(&self) -> bool {
        true
    }
}

/// The replica's one etcd watch on the whole prefix, fed into the hub. When the stream
/// breaks it is opened again after the last revision seen; when etcd compacted past that,
/// events were missed, so every watcher is ended and must relist.
async fn follow(
    conn: Arc<Connection>,
    root: String,
    hub: Arc<Hub>,
    revision: Arc<AtomicU64>,
    healthy: Arc<AtomicBool>,
) {
    let mut seen = hub.revision();
    let end = format!("{}0", root.trim_end_matches('/'));
    loop {
        let request = json!({"create_request": {
            "key": b64(root.as_bytes()), "range_end": b64(end.as_bytes()),
            "start_revision": (seen + 1).to_string(), "prev_kv": true,
        }});
        match conn.stream("/v3/watch", &request).await {
            Ok(mut body) => {
                healthy.store(true, Ordering::Release);
                let mut buf: Vec<u8> = Vec::new();
                'stream: while let Some(frame) = body.frame().await {
                    let Ok(frame) = frame else { break };
                    let Some(data) = frame.data_ref() else {
                        continue;
                    };
                    buf.extend_from_slice(data);
                    if buf.len() > MAX_RESPONSE {
                        tracing::warn!("an etcd watch message exceeded the size limit");
                        break;
                    }
                    // Whole JSON messages off the front of the buffer.
                    let mut messages =
                        serde_json::Deserializer::from_slice(&buf).into_iter::<Value>();
                    let mut consumed = 0;
                    while let Some(Ok(message)) = messages.next() {
                        consumed = messages.byte_offset();
                        match take(&message, &root, &hub, &mut seen) {
                            Taken::Events => {}
                            Taken::Compacted(at) => {
                                tracing::warn!(
                                    compacted = at,
                                    "etcd compacted past this replica's watch; watchers relist"
                                );
                                hub.reset(at);
                                seen = at;
                                break 'stream;
                            }
                            Taken::Ended(why) => {
                                tracing::warn!(%why, "etcd ended the watch");
                                break 'stream;
                            }
                        }
                        revision.fetch_max(seen, Ordering::AcqRel);
                    }
                    buf.drain(..consumed);
                }
                // etcd ends a watch stream only when it goes away (or compacted past it):
                // not ready until it is opened again.
                healthy.store(false, Ordering::Release);
            }
            Err(e) => {
                healthy.store(false, Ordering::Release);
                tracing::warn!(error = %e, "etcd watch could not be opened; retrying");
            }
        }
        tokio::time::sleep(WATCH_BACKOFF).await;
    }
}

enum Taken {
    Events,
    Compacted(u64),
    Ended(String),
}

/// Hands one watch message's events to the hub.
fn take(message: &Value, root: &str, hub: &Hub, seen: &mut u64) -> Taken {
    let result = &message["result"];
    if result.is_null() {
        return Taken::Ended(message.to_string());
    }
    let compact = int(&result["compact_revision"]);
    if compact > 0 {
        return Taken::Compacted(compact);
    }
    if result["canceled"].as_bool() == Some(true) {
        return Taken::Ended(
            result["cancel_reason"]
                .as_str()
                .unwrap_or("canceled")
                .into(),
        );
    }
    let mut events = Vec::new();
    for e in result["events"].as_array().into_iter().flatten() {
        let (Ok(current), prev) = (kv(&e["kv"]), e.get("prev_kv").map(kv)) else {
            continue;
        };
        let Some(key) = current.key.strip_prefix(root).and_then(ObjectKey::decode) else {
            continue;
        };
        let prev = prev.and_then(|p| p.ok()).map(|p| Versioned {
            value: p.value,
            mod_revision: p.mod_revision,
        });
        let deleted = e["type"].as_str() == Some("DELETE");
        let kind = if deleted {
            EventKind::Deleted
        } else if current.create_revision == current.mod_revision {
            EventKind::Added
        } else {
            EventKind::Modified
        };
        let revision = current.mod_revision;
        if revision <= *seen {
            continue;
        }
        let value = if deleted {
            prev.as_ref().map(|p| p.value.clone()).unwrap_or_default()
        } else {
            current.value
        };
        events.push(Event {
            kind,
            key,
            value,
            revision,
            prev,
        });
    }
    // Only events move the mark: the header of the "created" answer is etcd's revision
    // when the watch was set up, and its events may still be on their way.
    if let Some(last) = events.last() {
        *seen = last.revision;
    }
    hub.publish(events);
    Taken::Events
}
