//! The secure port's request handling: non-resource paths (discovery, OpenAPI, health,
//! version) and the verbs on `zen.watcher.io/v1alpha1` resources, over a [`Store`].
//!
//! Authentication happens before this service (TLS client certificates in `dev`); errors
//! become `metav1.Status` only in [`ApiError::into_response`].

use std::{
    collections::HashMap,
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};
use zen_crds::{
    API_GROUP, VERSION,
    schema::{SchemaValidator, UnknownFields},
};
use zen_serving::{Body, empty, full};
use zen_store::{EventKind, ListOptions, ObjectKey, Prefix, Store, StoreError};

use crate::{
    continue_token::ContinueToken,
    discovery::{Discovery, Document},
    metrics::ApiMetrics,
    negotiation::{MetaVersion, Output, negotiate},
    objects::{self, NAME_ATTEMPTS, Names, Naming},
    openapi::{OpenApi, V3_GROUP_PATH},
    params::{Params, VersionMatch},
    patch::{self, PatchType},
    request_info::{RequestInfo, ResourceRequest},
    resources::{ServedResource, catalog},
    selectors::{FieldSelector, LabelSelector, Selection},
    status::{ApiError, Cause, MODIFIED},
    strategy::{self, Target},
    table,
    view::ObjectView,
    watch::{self, EventType},
};

/// Largest request body, as kube-apiserver limits it (3 MiB).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;
/// Watches open at once; more get 429.
pub const MAX_WATCHES: usize = 10_000;
/// Longest watch when the client gives no `timeoutSeconds` (kube-apiserver: 30 to 60 min).
const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// How often a watch that allows bookmarks gets one.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(30);
/// Retries of a patch without a resourceVersion that lost a race.
const PATCH_RETRIES: usize = 5;

type Result<T> = std::result::Result<T, ApiError>;

/// The aggregated API service.
#[derive(Clone)]
pub struct ApiServer {
    inner: Arc<Inner>,
}

struct Inner {
    catalog: Vec<ServedResource>,
    validators: HashMap<&'static str, SchemaValidator>,
    store: Arc<dyn Store>,
    discovery: Discovery,
    openapi: OpenApi,
    metrics: ApiMetrics,
    open_watches: AtomicUsize,
    events: EventCache,
}

/// Watch events decoded and encoded once per change and output form, shared by every watcher
/// that receives them: a change reaching 1,000 watches is parsed once, not 1,000 times.
#[derive(Default)]
struct EventCache {
    entries: std::sync::Mutex<std::collections::VecDeque<CachedEvent>>,
}

struct CachedEvent {
    revision: u64,
    now: Option<Arc<Value>>,
    before: Option<Arc<Value>>,
    lines: Vec<(EventType, Output, bool, Bytes)>,
}

/// Recent changes kept decoded; watchers read the latest few at most.
const EVENT_CACHE: usize = 64;

impl EventCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::VecDeque<CachedEvent>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The object after the change and, when `with_before`, before it.
    fn decoded(
        &self,
        event: &zen_store::Event,
        with_before: bool,
    ) -> (Option<Arc<Value>>, Option<Arc<Value>>) {
        let mut entries = self.lock();
        if let Some(e) = entries.iter_mut().find(|e| e.revision == event.revision) {
            if with_before && e.before.is_none() {
                e.before = event
                    .prev
                    .as_ref()
                    .and_then(|p| decode_stored(&p.value, event.revision).ok())
                    .map(Arc::new);
            }
            return (e.now.clone(), e.before.clone());
        }
        let now = decode_stored(&event.value, event.revision)
            .ok()
            .map(Arc::new);
        let before = if with_before {
            event
                .prev
                .as_ref()
                .and_then(|p| decode_stored(&p.value, event.revision).ok())
                .map(Arc::new)
        } else {
            None
        };
        entries.push_back(CachedEvent {
            revision: event.revision,
            now: now.clone(),
            before: before.clone(),
            lines: Vec::new(),
        });
        while entries.len() > EVENT_CACHE {
            entries.pop_front();
        }
        (now, before)
    }

    /// The encoded line for this change, kind and output form.
    fn line(
        &self,
        revision: u64,
        kind: EventType,
        output: Output,
        from_before: bool,
        render: impl FnOnce() -> Bytes,
    ) -> Bytes {
        if let Some(line) = self
            .lock()
            .iter()
            .find(|e| e.revision == revision)
            .and_then(|e| {
                e.lines
                    .iter()
                    .find(|(k, o, b, _)| *k == kind && *o == output && *b == from_before)
                    .map(|(_, _, _, line)| line.clone())
            })
        {
            return line;
        }
        let line = render();
        if let Some(e) = self.lock().iter_mut().find(|e| e.revision == revision) {
            e.lines.push((kind, output, from_before, line.clone()));
        }
        line
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => {
                ApiError::Unavailable(format!("storage is unavailable: {m}"))
            }
            StoreError::FutureRevision { requested, .. } => {
                ApiError::Timeout(format!("Too large resource version: {requested}"))
            }
            StoreError::Expired { requested, .. } => {
                ApiError::Expired(format!("too old resource version: {requested}"))
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl ApiServer {
    pub fn new(store: Arc<dyn Store>, metrics: ApiMetrics) -> std::result::Result<Self, String> {
        let catalog = catalog();
        let mut validators = HashMap::new();
        for r in &catalog {
            validators.insert(r.plural, SchemaValidator::new(r.schema.clone())?);
        }
        Ok(Self {
            inner: Arc::new(Inner {
                discovery: Discovery::new(&catalog),
                openapi: OpenApi::new(&catalog),
                catalog,
                validators,
                store,
                metrics,
                open_watches: AtomicUsize::new(0),
                events: EventCache::default(),
            }),
        })
    }

    pub fn store(&self) -> Arc<dyn Store> {
        self.inner.store.clone()
    }

    /// Makes the stored objects of `plural` exactly `desired`: server-owned objects (the
    /// WebhookEndpoints derived from Ingestors) that no user verb writes. Objects are
    /// rewritten only when they differ; each write is a compare-and-swap on the revision
    /// read, so a concurrent writer makes this fail with a conflict rather than lose data.
    pub async fn sync_derived(&self, plural: &str, desired: Vec<Value>) -> Result<usize> {
        let resource = self.served(plural)?;
        let mut current = std::collections::HashMap::new();
        let mut options = ListOptions::default();
        loop {
            let page = self
                .inner
                .store
                .list(Prefix::new(resource.plural, None), options.clone())
                .await?;
            for (key, v) in &page.items {
                current.insert(
                    (key.namespace.clone(), key.name.clone()),
                    (decode_stored(&v.value, v.mod_revision)?, v.mod_revision),
                );
            }
            if !page.more {
                break;
            }
            options.start_after = page.items.last().map(|(k, _)| k.clone());
            options.at_revision = Some(page.revision);
        }
        let mut writes = 0;
        for mut obj in desired {
            let meta = |f: &str| {
                obj.pointer(&format!("/metadata/{f}"))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            let (ns, name) = (meta("namespace"), meta("name"));
            let key = Self::key(resource, &ns, &name);
            match current.remove(&(ns.clone(), name.clone())) {
                None => {
                    let uid = objects::new_uid();
                    let status = obj.get("status").cloned();
                    strategy::prepare_for_create(
                        &mut obj,
                        resource.kind,
                        &uid,
                        &crate::objects::now_rfc3339(),
                    );
                    if let (Some(map), Some(status)) = (obj.as_object_mut(), status) {
                        map.insert("status".into(), status);
                    }
                    self.inner
                        .store
                        .create(key, encode_stored(&mut obj)?)
                        .await?;
                    writes += 1;
                }
                Some((stored, rev)) => {
                    let same = ["spec", "status"]
                        .iter()
                        .all(|f| stored.get(*f) == obj.get(*f))
                        && stored.pointer("/metadata/labels") == obj.pointer("/metadata/labels");
                    if same {
                        continue;
                    }
                    if let (Some(map), Some(old_meta)) =
                        (obj.as_object_mut(), stored.get("metadata"))
                    {
                        let mut meta = old_meta.clone();
                        if let (Some(m), Some(labels)) = (
                            meta.as_object_mut(),
                            map.get("metadata").and_then(|m| m.get("labels")),
                        ) {
                            m.insert("labels".into(), labels.clone());
                        }
                        map.insert("metadata".into(), meta);
                    }
                    self.inner
                        .store
                        .update(key, encode_stored(&mut obj)?, Some(rev))
                        .await?;
                    writes += 1;
                }
            }
        }
        for ((ns, name), (_, rev)) in current {
            self.inner
                .store
                .delete(Self::key(resource, &ns, &name), Some(rev))
                .await?;
            writes += 1;
        }
        Ok(writes)
    }

    /// The verbs for callers inside this process (the ingest sink): the same defaulting,
    /// validation, storage and watch events as over HTTP, without encoding a request and
    /// parsing the answer again.
    pub async fn create_object(&self, plural: &str, ns: &str, obj: Value) -> Result<Value> {
        self.create_object_named(plural, ns, obj, Naming::Metadata)
            .await
    }

    /// `create_object` for a caller that handles a taken name itself: the object comes back
    /// as [`Created::Taken`] instead of an error, so the caller need not keep a copy to try
    /// again with.
    pub async fn try_create_object(&self, plural: &str, ns: &str, obj: Value) -> Result<Created> {
        let resource = self.served(plural)?;
        self.create(resource, ns, obj, Naming::Metadata, &Params::default())
            .await
    }

    /// `create_object` with the names `naming` gives, tried until one is free (at most
    /// [`NAME_ATTEMPTS`]).
    pub async fn create_object_named(
        &self,
        plural: &str,
        ns: &str,
        obj: Value,
        naming: Naming<'_>,
    ) -> Result<Value> {
        let resource = self.served(plural)?;
        let (obj, _) = self
            .create(resource, ns, obj, naming, &Params::default())
            .await?
            .stored(resource)?;
        Ok(obj)
    }

    pub async fn get(&self, plural: &str, ns: &str, name: &str) -> Result<Value> {
        self.get_object(self.served(plural)?, ns, name).await
    }

    /// Writes `obj`'s status as `PUT .../status` does: compare-and-swap on its
    /// `resourceVersion` when it carries one.
    pub async fn update_status(
        &self,
        plural: &str,
        ns: &str,
        name: &str,
        obj: Value,
    ) -> Result<Value> {
        let resource = self.served(plural)?;
        let (obj, _) = self
            .update(resource, ns, name, obj, Target::Status, &Params::default())
            .await?;
        Ok(obj)
    }

    /// Deletes the object if it is still at `resource_version` (when given).
    pub async fn delete_object(
        &self,
        plural: &str,
        ns: &str,
        name: &str,
        resource_version: Option<String>,
    ) -> Result<Value> {
        let options = DeleteOptions {
            resource_version,
            ..DeleteOptions::default()
        };
        self.delete(self.served(plural)?, ns, name, &options).await
    }

    /// Every object in `ns` the field selector matches.
    pub async fn list_objects(
        &self,
        plural: &str,
        ns: &str,
        field_selector: &str,
    ) -> Result<Vec<Value>> {
        let resource = self.served(plural)?;
        let params = Params {
            field_selector: field_selector.to_owned(),
            ..Params::default()
        };
        let (items, _) = self.select(resource, Some(ns), &params).await?;
        items
            .iter()
            .map(|v| decode_stored(&v.value, v.mod_revision))
            .collect()
    }

    fn served(&self, plural: &str) -> Result<&ServedResource> {
        crate::resources::find(&self.inner.catalog, plural)
            .ok_or_else(|| ApiError::Internal(format!("{plural} is not served")))
    }

    /// Answers one request; never fails (errors are Status responses).
    pub async fn handle<B>(&self, req: Request<B>) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<zen_serving::BoxError>,
    {
        match self.route(req).await {
            Ok(resp) => resp,
            Err(e) => e.into_response(),
        }
    }

    async fn route<B>(&self, req: Request<B>) -> Result<Response<Body>>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<zen_serving::BoxError>,
    {
        let path = req.uri().path().to_owned();
        let inm = header_str(&req, header::IF_NONE_MATCH);
        let d = &self.inner.discovery;
        let o = &self.inner.openapi;
        match path.as_str() {
            "/healthz" | "/livez" => return Ok(text(StatusCode::OK, "ok")),
            "/readyz" => {
                return Ok(if self.inner.store.ready() {
                    text(StatusCode::OK, "ok")
                } else {
                    text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "[-]store failed: not ready\nreadyz check failed",
                    )
                });
            }
            "/version" => return Ok(document(&d.version, None, &[])),
            "/apis" | "/apis/" => {
                let accept = header_str(&req, header::ACCEPT);
                let doc = match negotiate(accept.as_deref(), true)? {
                    Output::Discovery(crate::negotiation::DiscoveryVersion::V2) => &d.aggregated_v2,
                    Output::Discovery(crate::negotiation::DiscoveryVersion::V2beta1) => {
                        &d.aggregated_v2beta1
                    }
                    _ => &d.group_list,
                };
                return Ok(document(doc, inm.as_deref(), &[("vary", "Accept")]));
            }
            "/openapi/v2" => return Ok(document(&o.v2, inm.as_deref(), &[])),
            "/openapi/v3" | "/openapi/v3/" => return Ok(document(&o.v3_root, inm.as_deref(), &[])),
            _ => {}
        }
        if path == format!("/openapi/v3/{V3_GROUP_PATH}") {
            let hashed = req.uri().query().is_some_and(|q| q.contains("hash="));
            let cache: &[(&str, &str)] = if hashed {
                &[
                    ("cache-control", "public, immutable"),
                    ("expires", "Thu, 31 Dec 2099 00:00:00 GMT"),
                ]
            } else {
                &[("cache-control", "no-cache, private")]
            };
            return Ok(document(&o.v3_group, inm.as_deref(), cache));
        }
        if path == format!("/apis/{API_GROUP}") || path == format!("/apis/{API_GROUP}/") {
            return Ok(document(&d.group, inm.as_deref(), &[]));
        }
        if path == format!("/apis/{API_GROUP}/{VERSION}")
            || path == format!("/apis/{API_GROUP}/{VERSION}/")
        {
            return Ok(document(&d.resource_list, inm.as_deref(), &[]));
        }
        if let Some(version) = crate::authn::self_subject_review_version(&path) {
            return crate::authn::self_subject_review(
                version,
                req.method(),
                req.extensions().get::<zen_auth::UserInfo>(),
            );
        }
        let params = Params::parse(req.uri().query())?;
        match RequestInfo::parse(req.method(), &path, params.watch) {
            RequestInfo::Resource(info) => self.resource(req, info, params).await,
            RequestInfo::NonResource { .. } => Err(ApiError::NotFound {
                resource: String::new(),
                name: path,
            })
            .map_err(|_| not_found_path()),
        }
    }

    async fn resource<B>(
        &self,
        req: Request<B>,
        info: ResourceRequest,
        params: Params,
    ) -> Result<Response<Body>>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<zen_serving::BoxError>,
    {
        let inner = &self.inner;
        let Some(resource) = crate::resources::find(&inner.catalog, &info.resource) else {
            return Err(not_found_path());
        };
        let allowed = match &info.subresource {
            None => {
                resource.supports(info.verb) || (info.verb == "watch" && resource.supports("watch"))
            }
            Some(sub) => resource
                .subresource_verbs(sub)
                .is_some_and(|verbs| verbs.contains(&info.verb)),
        };
        if info
            .subresource
            .as_deref()
            .is_some_and(|s| resource.subresource_verbs(s).is_none())
        {
            return Err(not_found_path());
        }
        if !allowed {
            return Err(ApiError::MethodNotAllowed(format!(
                "{} is not supported on {}{}",
                info.verb,
                resource.qualified_name(),
                info.subresource
                    .as_deref()
                    .map(|s| format!("/{s}"))
                    .unwrap_or_default()
            )));
        }
        if info.subresource.as_deref() == Some("ingest") {
            return Err(ApiError::Unavailable(
                "webhook ingestion is not available in this build yet".into(),
            ));
        }
        let accept = header_str(&req, header::ACCEPT);
        let output = negotiate(accept.as_deref(), false)?;
        let target = if info.subresource.as_deref() == Some("status") {
            Target::Status
        } else {
            Target::Main
        };
        let ns = info.namespace.clone();
        match (info.verb, info.name.clone()) {
            ("list", None) => self.list(resource, ns.as_deref(), &params, output).await,
            ("watch", _) => {
                self.watch(
                    resource,
                    ns.as_deref(),
                    info.name.as_deref(),
                    &params,
                    output,
                )
                .await
            }
            ("get", Some(name)) => {
                let ns = require_ns(ns)?;
                let obj = self.get_object(resource, &ns, &name).await?;
                Ok(render_one(resource, obj, output, StatusCode::OK, &[]))
            }
            ("create", None) => {
                let ns = require_ns(ns)?;
                let obj = decode_body(&read_body(req).await?, None)?;
                let (obj, warnings) = self
                    .create(resource, &ns, obj, Naming::Metadata, &params)
                    .await?
                    .stored(resource)?;
                Ok(render_one(
                    resource,
                    obj,
                    output,
                    StatusCode::CREATED,
                    &warnings,
                ))
            }
            ("update", Some(name)) => {
                let ns = require_ns(ns)?;
                let obj = decode_body(&read_body(req).await?, None)?;
                let (obj, warnings) = self
                    .update(resource, &ns, &name, obj, target, &params)
                    .await?;
                Ok(render_one(resource, obj, output, StatusCode::OK, &warnings))
            }
            ("patch", Some(name)) => {
                let ns = require_ns(ns)?;
                let content_type = header_str(&req, header::CONTENT_TYPE).unwrap_or_default();
                let Some(kind) = PatchType::from_content_type(&content_type) else {
                    return Err(ApiError::UnsupportedMediaType(format!(
                        "the body of the request was in an unknown format - accepted media types include: {}",
                        PatchType::ACCEPTED.join(", ")
                    )));
                };
                let body = read_body(req).await?;
                let (obj, warnings) = self
                    .patch(resource, &ns, &name, kind, &body, target, &params)
                    .await?;
                Ok(render_one(resource, obj, output, StatusCode::OK, &warnings))
            }
            ("delete", Some(name)) => {
                let ns = require_ns(ns)?;
                let options = DeleteOptions::decode(&read_body(req).await?, params.dry_run)?;
                let obj = self.delete(resource, &ns, &name, &options).await?;
                Ok(render_one(resource, obj, output, StatusCode::OK, &[]))
            }
            ("deletecollection", None) => {
                self.delete_collection(resource, ns.as_deref(), &params)
                    .await
            }
            _ => Err(ApiError::MethodNotAllowed(format!(
                "{} is not supported here",
                info.verb
            ))),
        }
    }

    fn selection(&self, resource: &ServedResource, params: &Params) -> Result<Selection> {
        Ok(Selection {
            labels: LabelSelector::parse(&params.label_selector)?,
            fields: FieldSelector::parse(&params.field_selector, resource.selectable_fields)?,
        })
    }

    fn key(resource: &ServedResource, ns: &str, name: &str) -> ObjectKey {
        ObjectKey::new(resource.plural, ns, name)
    }

    async fn get_object(&self, resource: &ServedResource, ns: &str, name: &str) -> Result<Value> {
        let key = Self::key(resource, ns, name);
        match self.inner.store.get(&key).await? {
            Some(v) => decode_stored(&v.value, v.mod_revision),
            None => Err(not_found(resource, name)),
        }
    }

    async fn list(
        &self,
        resource: &ServedResource,
        ns: Option<&str>,
        params: &Params,
        output: Output,
    ) -> Result<Response<Body>> {
        let (items, meta) = self.select(resource, ns, params).await?;
        render_list(resource, items, meta, output, params)
    }

    /// Reads pages until `limit` objects passed the selectors or the prefix is exhausted;
    /// returns them with the list's metadata (revision and continue token).
    async fn select(
        &self,
        resource: &ServedResource,
        ns: Option<&str>,
        params: &Params,
    ) -> Result<(Vec<zen_store::Versioned>, Value)> {
        let selection = self.selection(resource, params)?;
        let prefix = Prefix::new(resource.plural, ns);
        let store = &self.inner.store;
        let (mut start_after, mut at_revision) = match &params.continue_token {
            Some(token) => {
                let t = ContinueToken::decode(token)?;
                (ObjectKey::decode(&t.after), Some(t.revision))
            }
            None => (None, None),
        };
        if at_revision.is_none() {
            match (params.revision()?, params.version_match) {
                (Some(rv), Some(VersionMatch::Exact)) => at_revision = Some(rv),
                (Some(rv), _) if rv > store.current_revision() => {
                    return Err(ApiError::Timeout(format!(
                        "Too large resource version: {rv}, current: {}",
                        store.current_revision()
                    )));
                }
                _ => {}
            }
        }
        let limit = params.limit;
        let mut items = Vec::new();
        let mut next: Option<ContinueToken> = None;
        let mut revision;
        loop {
            let page = store
                .list(
                    prefix.clone(),
                    ListOptions {
                        start_after: start_after.clone(),
                        limit: limit.map(|l| l - items.len()).or(Some(usize::MAX)),
                        at_revision,
                    },
                )
                .await
                .map_err(|e| match e {
                    StoreError::Expired { .. } if params.continue_token.is_some() => ApiError::Expired(
                        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.".into(),
                    ),
                    other => other.into(),
                })?;
            revision = page.revision;
            at_revision = Some(page.revision);
            let last = page.items.last().map(|(k, _)| k.clone());
            for (_, v) in page.items {
                if selection.is_empty() || selection.matches(&view(&v)?) {
                    items.push(v);
                }
            }
            if !page.more {
                break;
            }
            if limit.is_some_and(|l| items.len() >= l) {
                next = last.map(|k| ContinueToken::new(revision, k.encode()));
                break;
            }
            start_after = last;
        }
        let mut meta = json!({"resourceVersion": revision.to_string()});
        if let Some(t) = next {
            meta["continue"] = json!(t.encode());
        }
        Ok((items, meta))
    }

    async fn create(
        &self,
        resource: &ServedResource,
        ns: &str,
        mut obj: Value,
        naming: Naming<'_>,
        params: &Params,
    ) -> Result<Created> {
        check_type(resource, &obj)?;
        let map = obj
            .as_object_mut()
            .ok_or_else(|| ApiError::BadRequest("the body must be a JSON object".into()))?;
        let meta = map.entry("metadata").or_insert_with(|| json!({}));
        let meta = meta
            .as_object_mut()
            .ok_or_else(|| ApiError::BadRequest("metadata must be an object".into()))?;
        match meta.get("namespace").and_then(Value::as_str) {
            Some(body_ns) if !body_ns.is_empty() && body_ns != ns => {
                return Err(ApiError::BadRequest(
                    "the namespace of the provided object does not match the namespace sent on the request".into(),
                ));
            }
            _ => {
                meta.insert("namespace".into(), json!(ns));
            }
        }
        let names = Names::start(naming, meta);
        map.insert("apiVersion".into(), json!(format!("{API_GROUP}/{VERSION}")));
        map.insert("kind".into(), json!(resource.kind));
        let uid = objects::new_uid();
        strategy::prepare_for_create(
            &mut obj,
            resource.kind,
            &uid,
            &crate::objects::now_rfc3339(),
        );
        let warnings = self.validate(resource, &mut obj, params)?;
        if params.dry_run {
            return Ok(Created::Stored(obj, warnings));
        }
        let mut attempts = 1;
        loop {
            let name = objects::meta_str(&obj, "name")
                .unwrap_or_default()
                .to_owned();
            let stored = encode_stored(&mut obj)?;
            match self
                .inner
                .store
                .create(Self::key(resource, ns, &name), stored)
                .await
            {
                Ok(rev) => {
                    set_revision(&mut obj, rev);
                    return Ok(Created::Stored(obj, warnings));
                }
                // Another object holds the generated name: the next name differs only in
                // its generated part, which validation has already seen the shape of.
                Err(StoreError::AlreadyExists) if attempts < NAME_ATTEMPTS => {
                    let Some(next) = names.next() else {
                        return Ok(Created::Taken(obj));
                    };
                    if let Some(slot) = obj.pointer_mut("/metadata/name") {
                        *slot = Value::String(next);
                    }
                    attempts += 1;
                }
                Err(e) => return Err(write_error(resource, &name)(e)),
            }
        }
    }

    async fn update(
        &self,
        resource: &ServedResource,
        ns: &str,
        name: &str,
        obj: Value,
        target: Target,
        params: &Params,
    ) -> Result<(Value, Vec<String>)> {
        check_type(resource, &obj)?;
        let body_name = objects::meta_str(&obj, "name").unwrap_or_default();
        if body_name != name {
            return Err(ApiError::BadRequest(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        if let Some(body_ns) = objects::meta_str(&obj, "namespace")
            && !body_ns.is_empty()
            && body_ns != ns
        {
            return Err(ApiError::BadRequest(
                "the namespace of the provided object does not match the namespace sent on the request".into(),
            ));
        }
        let current = self.get_object(resource, ns, name).await?;
        let current_rev = revision_of(&current).unwrap_or(0);
        let expected = match objects::meta_str(&obj, "resourceVersion") {
            Some(rv) if !rv.is_empty() => {
                let rv: u64 = rv
                    .parse()
                    .map_err(|_| ApiError::BadRequest(format!("invalid resourceVersion {rv:?}")))?;
                if rv != current_rev {
                    return Err(conflict(resource, name));
                }
                rv
            }
            _ => current_rev,
        };
        self.write_update(resource, ns, name, obj, &current, expected, target, params)
            .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn write_update(
        &self,
        resource: &ServedResource,
        ns: &str,
        name: &str,
        mut obj: Value,
        current: &Value,
        expected: u64,
        target: Target,
        params: &Params,
    ) -> Result<(Value, Vec<String>)> {
        if let Some(map) = obj.as_object_mut() {
            map.insert("apiVersion".into(), json!(format!("{API_GROUP}/{VERSION}")));
            map.insert("kind".into(), json!(resource.kind));
            if let Some(meta) = map.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.insert("namespace".into(), json!(ns));
                meta.insert("name".into(), json!(name));
            }
        }
        strategy::prepare_for_update(&mut obj, current, target);
        let warnings = self.validate(resource, &mut obj, params)?;
        if params.dry_run {
            return Ok((obj, warnings));
        }
        let stored = encode_stored(&mut obj)?;
        let rev = self
            .inner
            .store
            .update(Self::key(resource, ns, name), stored, Some(expected))
            .await
            .map_err(write_error(resource, name))?;
        set_revision(&mut obj, rev);
        Ok((obj, warnings))
    }

    #[allow(clippy::too_many_arguments)]
    async fn patch(
        &self,
        resource: &ServedResource,
        ns: &str,
        name: &str,
        kind: PatchType,
        body: &[u8],
        target: Target,
        params: &Params,
    ) -> Result<(Value, Vec<String>)> {
        for _ in 0..PATCH_RETRIES {
            let current = self.get_object(resource, ns, name).await?;
            let current_rev = revision_of(&current).unwrap_or(0);
            let patched = patch::apply(kind, &current, body).map_err(|e| match e {
                patch::PatchError::Malformed(m) => ApiError::BadRequest(m),
                patch::PatchError::Inapplicable(m) => ApiError::Invalid {
                    kind: resource.kind.into(),
                    name: name.into(),
                    causes: vec![Cause {
                        reason: "FieldValueInvalid".into(),
                        message: m,
                        field: String::new(),
                    }],
                },
            })?;
            let explicit = objects::meta_str(&patched, "resourceVersion")
                .filter(|rv| *rv != current_rev.to_string())
                .map(str::to_owned);
            if explicit.is_some() {
                return Err(conflict(resource, name));
            }
            if objects::meta_str(&patched, "name") != Some(name) {
                return Err(ApiError::BadRequest(
                    "a patch may not change metadata.name".into(),
                ));
            }
            match self
                .write_update(
                    resource,
                    ns,
                    name,
                    patched,
                    &current,
                    current_rev,
                    target,
                    params,
                )
                .await
            {
                // Nobody asked for this revision: someone else's write won the race; retry.
                Err(ApiError::Conflict { .. }) => continue,
                other => return other,
            }
        }
        Err(conflict(resource, name))
    }

    /// The object as it was last (or, on a dry run, as it is).
    async fn delete(
        &self,
        resource: &ServedResource,
        ns: &str,
        name: &str,
        options: &DeleteOptions,
    ) -> Result<Value> {
        let current = self.get_object(resource, ns, name).await?;
        let rev = revision_of(&current).unwrap_or(0);
        if let Some(uid) = options.uid.as_deref() {
            let actual = objects::meta_str(&current, "uid").unwrap_or("");
            if uid != actual {
                return Err(ApiError::Conflict {
                    resource: resource.plural.into(),
                    name: name.into(),
                    detail: format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}"
                    ),
                });
            }
        }
        if let Some(want) = options.resource_version.as_deref()
            && want != rev.to_string()
        {
            return Err(ApiError::Conflict {
                resource: resource.plural.into(),
                name: name.into(),
                detail: format!(
                    "Precondition failed: ResourceVersion in precondition: {want}, ResourceVersion in object meta: {rev}"
                ),
            });
        }
        if options.dry_run {
            return Ok(current);
        }
        let (last, _) = self
            .inner
            .store
            .delete(Self::key(resource, ns, name), Some(rev))
            .await
            .map_err(write_error(resource, name))?;
        decode_stored(&last, rev)
    }

    async fn delete_collection(
        &self,
        resource: &ServedResource,
        ns: Option<&str>,
        params: &Params,
    ) -> Result<Response<Body>> {
        let selection = self.selection(resource, params)?;
        let page = self
            .inner
            .store
            .list(Prefix::new(resource.plural, ns), ListOptions::default())
            .await?;
        let mut deleted = Vec::new();
        for (key, v) in page.items {
            if !selection.matches(&view(&v)?) {
                continue;
            }
            if !params.dry_run {
                match self.inner.store.delete(key, Some(v.mod_revision)).await {
                    Ok(_) | Err(StoreError::NotFound | StoreError::Conflict { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            deleted.push(v);
        }
        let meta = json!({"resourceVersion": self.inner.store.current_revision().to_string()});
        render_list(resource, deleted, meta, Output::Json, params)
    }

    fn validate(
        &self,
        resource: &ServedResource,
        obj: &mut Value,
        params: &Params,
    ) -> Result<Vec<String>> {
        let name = objects::meta_str(obj, "name").unwrap_or("").to_owned();
        let mut causes: Vec<Cause> = obj
            .get("metadata")
            .and_then(Value::as_object)
            .map(objects::validate)
            .unwrap_or_default()
            .into_iter()
            .map(|e| Cause::from_field_error(e.reason, &e.field, &e.message))
            .collect();
        let mut warnings = Vec::new();
        if let Some(v) = self.inner.validators.get(resource.plural) {
            let result = v.validate(obj, params.field_validation);
            if params.field_validation == UnknownFields::Strict
                && let Some(unknown) = result
                    .errors
                    .iter()
                    .find(|e| e.kind == zen_crds::schema::ErrorKind::Unknown)
            {
                // kube-apiserver answers strict decoding errors with 400, not 422.
                return Err(ApiError::BadRequest(format!(
                    "strict decoding error: unknown field \"{}\"",
                    unknown.field
                )));
            }
            causes.extend(
                result
                    .errors
                    .iter()
                    .map(|e| Cause::from_field_error(e.kind.cause(), &e.field, &e.message)),
            );
            warnings = result.warnings;
        }
        if let Some(details) = obj.get("spec").and_then(|spec| spec.get("details"))
            && zen_serving::json::encoded_len(details) > zen_crds::observation::MAX_DETAILS_BYTES
        {
            causes.push(Cause {
                reason: "FieldValueTooLong".into(),
                message: format!(
                    "Too long: may not be more than {} bytes",
                    zen_crds::observation::MAX_DETAILS_BYTES
                ),
                field: "spec.details".into(),
            });
        }
        if causes.is_empty() {
            Ok(warnings)
        } else {
            Err(ApiError::Invalid {
                kind: resource.kind.into(),
                name,
                causes,
            })
        }
    }

    async fn watch(
        &self,
        resource: &ServedResource,
        ns: Option<&str>,
        name: Option<&str>,
        params: &Params,
        output: Output,
    ) -> Result<Response<Body>> {
        let mut selection = self.selection(resource, params)?;
        if let Some(name) = name {
            selection.fields.0.push(crate::selectors::FieldRequirement {
                field: "metadata.name".into(),
                value: name.into(),
                negate: false,
            });
        }
        let inner = self.inner.clone();
        if inner.open_watches.fetch_add(1, Ordering::AcqRel) >= MAX_WATCHES {
            inner.open_watches.fetch_sub(1, Ordering::AcqRel);
            return Err(ApiError::TooManyRequests {
                message: "too many open watches; retry later".into(),
                retry_after_seconds: 1,
            });
        }
        let guard = WatchGuard(inner.clone());
        let prefix = Prefix::new(resource.plural, ns);
        let rv = params.revision()?;
        let legacy_initial = matches!(rv, None | Some(0));
        let send_initial = params.send_initial_events.unwrap_or(legacy_initial);
        let (initial, start) = if send_initial {
            let page = inner
                .store
                .list(prefix.clone(), ListOptions::default())
                .await?;
            let mut lines = Vec::new();
            for (_, v) in page.items {
                let view = view(&v)?;
                if selection.matches(&view) {
                    lines.push(render_event(resource, EventType::Added, &view, output));
                }
            }
            (lines, page.revision)
        } else {
            (
                Vec::new(),
                rv.unwrap_or_else(|| inner.store.current_revision()),
            )
        };
        let (tx, body) = watch::channel_body();
        let resource = resource.clone();
        let selective = !selection.is_empty();
        let matches = move |o: &Value| selection.matches(o);
        let subscription = inner.store.watch(prefix, start);
        let timeout = params.timeout.unwrap_or(DEFAULT_WATCH_TIMEOUT);
        let bookmarks = params.allow_bookmarks;
        let initial_end_bookmark = params.send_initial_events == Some(true) && bookmarks;
        inner.metrics.open_watches.inc();
        tokio::spawn(async move {
            let _guard = guard;
            let api_version = format!("{API_GROUP}/{VERSION}");
            let mut watcher = match subscription {
                Ok(w) => w,
                Err(e) => {
                    let err: ApiError = e.into();
                    let _ = tx
                        .send(watch::encode(EventType::Error, &err.to_status()))
                        .await;
                    return;
                }
            };
            for line in initial {
                if tx.send(line).await.is_err() {
                    return;
                }
            }
            if initial_end_bookmark {
                let b = watch::bookmark(&api_version, resource.kind, start, true);
                if tx
                    .send(watch::encode(EventType::Bookmark, &b))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            let deadline = tokio::time::sleep(timeout);
            tokio::pin!(deadline);
            let mut ticker = tokio::time::interval(BOOKMARK_INTERVAL);
            ticker.tick().await;
            let mut last_rev = start;
            loop {
                tokio::select! {
                    () = &mut deadline => break,
                    () = tx.closed() => break,
                    _ = ticker.tick(), if bookmarks => {
                        let b = watch::bookmark(&api_version, resource.kind, last_rev, false);
                        if tx.send(watch::encode(EventType::Bookmark, &b)).await.is_err() {
                            break;
                        }
                    }
                    event = watcher.next() => {
                        let Ok(event) = event else { break };
                        last_rev = event.revision;
                        let (Some(now), before) = inner.events.decoded(&event, selective) else { continue };
                        let stored = match event.kind {
                            EventKind::Added => EventType::Added,
                            EventKind::Modified => EventType::Modified,
                            EventKind::Deleted => EventType::Deleted,
                        };
                        let (was, is) = match event.kind {
                            EventKind::Deleted => (matches(&now), false),
                            EventKind::Added => (false, matches(&now)),
                            EventKind::Modified if !selective => (true, true),
                            EventKind::Modified => (before.as_deref().is_some_and(&matches), matches(&now)),
                        };
                        let Some(kind) = watch::transition(stored, was, is) else { continue };
                        // An object leaving the selection is reported as it was.
                        let from_before = kind == EventType::Deleted && event.kind == EventKind::Modified;
                        let stored = match (from_before, &event.prev) {
                            (true, Some(prev)) => &prev.value,
                            _ => &event.value,
                        };
                        let line = inner.events.line(event.revision, kind, output, from_before, || {
                            ObjectView::parse(stored, Some(event.revision))
                                .map(|view| render_event(&resource, kind, &view, output))
                                .unwrap_or_default()
                        });
                        if tx.send(line).await.is_err() {
                            break;
                        }
                    }
                }
            }
        });
        let mut resp = Response::new(body);
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(content_type(output)),
        );
        resp.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache, private"),
        );
        Ok(resp)
    }
}

/// Counts a watch as open until its task ends.
struct WatchGuard(Arc<Inner>);

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.0.open_watches.fetch_sub(1, Ordering::AcqRel);
        self.0.metrics.open_watches.dec();
    }
}

impl<B> tower::Service<Request<B>> for ApiServer
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<zen_serving::BoxError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future =
        Pin<Box<dyn Future<Output = std::result::Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::result::Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.handle(req).await) })
    }
}

/// What a `DELETE` asks beyond the object's name (its `DeleteOptions` body and `dryRun`).
#[derive(Debug, Default)]
struct DeleteOptions {
    dry_run: bool,
    uid: Option<String>,
    resource_version: Option<String>,
}

impl DeleteOptions {
    fn decode(body: &[u8], dry_run: bool) -> Result<Self> {
        let options = if body.is_empty() {
            json!({})
        } else {
            decode_body(body, None)?
        };
        let precondition = |field: &str| {
            options
                .pointer(&format!("/preconditions/{field}"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        Ok(Self {
            dry_run: dry_run
                || options["dryRun"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|v| v == "All")),
            uid: precondition("uid"),
            resource_version: precondition("resourceVersion"),
        })
    }
}

fn not_found_path() -> ApiError {
    ApiError::NotFound {
        resource: String::new(),
        name: String::new(),
    }
}

fn not_found(resource: &ServedResource, name: &str) -> ApiError {
    ApiError::NotFound {
        resource: resource.plural.into(),
        name: name.into(),
    }
}

/// What a create did.
pub enum Created {
    /// The object as stored (or, on a dry run, as it would be) and the schema's warnings.
    Stored(Value, Vec<String>),
    /// Another object holds the name the object was sent with: it comes back defaulted
    /// and validated, as it would have been stored.
    Taken(Value),
}

impl Created {
    /// The stored object, or the `AlreadyExists` error a client gets for a taken name.
    fn stored(self, resource: &ServedResource) -> Result<(Value, Vec<String>)> {
        match self {
            Created::Stored(obj, warnings) => Ok((obj, warnings)),
            Created::Taken(obj) => {
                let name = objects::meta_str(&obj, "name").unwrap_or_default();
                Err(write_error(resource, name)(StoreError::AlreadyExists))
            }
        }
    }
}

/// A store error of a write to one named object, as kube-apiserver states it.
fn write_error<'a>(
    resource: &'a ServedResource,
    name: &'a str,
) -> impl FnOnce(StoreError) -> ApiError + 'a {
    move |e| match e {
        StoreError::Conflict { .. } => conflict(resource, name),
        StoreError::NotFound => not_found(resource, name),
        StoreError::AlreadyExists => ApiError::AlreadyExists {
            resource: resource.plural.into(),
            name: name.into(),
        },
        other => other.into(),
    }
}

fn conflict(resource: &ServedResource, name: &str) -> ApiError {
    ApiError::Conflict {
        resource: resource.plural.into(),
        name: name.into(),
        detail: MODIFIED.into(),
    }
}

fn require_ns(ns: Option<String>) -> Result<String> {
    ns.filter(|n| !n.is_empty()).ok_or_else(|| {
        ApiError::BadRequest("the namespace of the object must be given in the request path".into())
    })
}

fn header_str<B>(req: &Request<B>, name: header::HeaderName) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn read_body<B>(req: Request<B>) -> Result<Bytes>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<zen_serving::BoxError>,
{
    let body = req.into_body().map_err(boxed);
    match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(ApiError::RequestEntityTooLarge(format!(
                "the request body is larger than {MAX_BODY_BYTES} bytes"
            )))
        }
        Err(e) => Err(ApiError::BadRequest(format!(
            "reading the request body: {e}"
        ))),
    }
}

fn boxed<E: Into<zen_serving::BoxError>>(e: E) -> zen_serving::BoxError {
    e.into()
}

/// JSON (or YAML) request bodies into a value; serde_json's own nesting limit applies.
fn decode_body(body: &[u8], _content_type: Option<&str>) -> Result<Value> {
    if body.is_empty() {
        return Err(ApiError::BadRequest("the request body is empty".into()));
    }
    match zen_serving::json::from_slice::<Value>(body) {
        Ok(v) => Ok(v),
        Err(json_err) => {
            let text = std::str::from_utf8(body).map_err(|_| {
                ApiError::BadRequest(format!("the body is not valid JSON: {json_err}"))
            })?;
            serde_saphyr::from_str::<Value>(text).map_err(|_| {
                ApiError::BadRequest(format!("the body is not valid JSON: {json_err}"))
            })
        }
    }
}

fn check_type(resource: &ServedResource, obj: &Value) -> Result<()> {
    let api_version = format!("{API_GROUP}/{VERSION}");
    if let Some(v) = obj.get("apiVersion").and_then(Value::as_str)
        && v != api_version
    {
        return Err(ApiError::BadRequest(format!(
            "the API version in the data ({v}) does not match the expected API version ({api_version})"
        )));
    }
    if let Some(k) = obj.get("kind").and_then(Value::as_str)
        && k != resource.kind
    {
        return Err(ApiError::BadRequest(format!(
            "the kind in the data ({k}) does not match the expected kind ({})",
            resource.kind
        )));
    }
    Ok(())
}

/// Stored bytes never carry `resourceVersion`: the store's revision is the truth (the
/// caller sets the new one once the write is done).
fn encode_stored(obj: &mut Value) -> Result<Bytes> {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    serde_json::to_vec(&*obj)
        .map(Bytes::from)
        .map_err(|e| ApiError::Internal(e.to_string()))
}

fn decode_stored(bytes: &[u8], revision: u64) -> Result<Value> {
    let mut obj: Value = zen_serving::json::from_slice(bytes)
        .map_err(|e| ApiError::Internal(format!("stored object is corrupt: {e}")))?;
    set_revision(&mut obj, revision);
    Ok(obj)
}

fn set_revision(obj: &mut Value, revision: u64) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), json!(revision.to_string()));
    }
}

fn revision_of(obj: &Value) -> Option<u64> {
    objects::meta_str(obj, "resourceVersion").and_then(|s| s.parse().ok())
}

fn content_type(output: Output) -> &'static str {
    match output {
        Output::Table(MetaVersion::V1) => "application/json;as=Table;v=v1;g=meta.k8s.io",
        Output::Table(MetaVersion::V1beta1) => "application/json;as=Table;v=v1beta1;g=meta.k8s.io",
        _ => "application/json",
    }
}

fn bytes_response(
    status: StatusCode,
    body: Vec<u8>,
    output: Output,
    warnings: &[String],
) -> Response<Body> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(output)),
    );
    for w in warnings {
        let escaped = w.replace('\\', "\\\\").replace('"', "\\\"");
        if let Ok(v) = HeaderValue::from_str(&format!("299 - \"{escaped}\"")) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
    resp
}

fn render_one(
    resource: &ServedResource,
    obj: Value,
    output: Output,
    status: StatusCode,
    warnings: &[String],
) -> Response<Body> {
    let text = serde_json::to_vec(&obj).unwrap_or_default();
    let mut out = Vec::with_capacity(text.len() + 256);
    if let Ok(view) = ObjectView::parse(&text, None) {
        render_object(resource, &view, output, &mut out);
    }
    bytes_response(status, out, output, warnings)
}

/// One object in the requested form (also each watch event's object).
fn render_object(
    resource: &ServedResource,
    view: &ObjectView<'_>,
    output: Output,
    out: &mut Vec<u8>,
) {
    match output {
        Output::Table(v) => {
            let meta = json!({"resourceVersion": view.resource_version()});
            table::render(
                resource,
                std::slice::from_ref(view),
                v,
                table::IncludeObject::Metadata,
                &meta,
                Timestamp::now(),
                out,
            );
        }
        Output::PartialMetadata(v) => table::write_partial_metadata(out, view, v),
        _ => view.write_object(out),
    }
}

/// A watch event's line.
fn render_event(
    resource: &ServedResource,
    kind: EventType,
    view: &ObjectView<'_>,
    output: Output,
) -> Bytes {
    let mut object = Vec::with_capacity(1024);
    render_object(resource, view, output, &mut object);
    watch::encode_raw(kind, &object)
}

/// Stored bytes read in place.
fn view(v: &zen_store::Versioned) -> Result<ObjectView<'_>> {
    ObjectView::parse(&v.value, Some(v.mod_revision)).map_err(|e| ApiError::Internal(e.to_string()))
}

fn render_list(
    resource: &ServedResource,
    items: Vec<zen_store::Versioned>,
    meta: Value,
    output: Output,
    params: &Params,
) -> Result<Response<Body>> {
    let views = items.iter().map(view).collect::<Result<Vec<_>>>()?;
    let size: usize = items.iter().map(|v| v.value.len()).sum();
    let mut out = Vec::with_capacity(size + 1024);
    match output {
        Output::Table(v) => table::render(
            resource,
            &views,
            v,
            params.include_object,
            &meta,
            Timestamp::now(),
            &mut out,
        ),
        Output::PartialMetadata(v) => {
            out.extend_from_slice(b"{\"kind\":\"PartialObjectMetadataList\",\"apiVersion\":");
            write_list_head(&mut out, &json!(v.api_version()), &meta);
            for (i, view) in views.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                table::write_partial_metadata(&mut out, view, v);
            }
            out.extend_from_slice(b"]}");
        }
        _ => {
            out.extend_from_slice(b"{\"kind\":");
            let _ = serde_json::to_writer(&mut out, resource.list_kind);
            out.extend_from_slice(b",\"apiVersion\":");
            write_list_head(&mut out, &json!(format!("{API_GROUP}/{VERSION}")), &meta);
            for (i, view) in views.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                view.write_object(&mut out);
            }
            out.extend_from_slice(b"]}");
        }
    }
    Ok(bytes_response(StatusCode::OK, out, output, &[]))
}

/// A list's apiVersion value, metadata, and the opening of its items.
fn write_list_head(out: &mut Vec<u8>, api_version: &Value, meta: &Value) {
    let _ = serde_json::to_writer(&mut *out, api_version);
    out.extend_from_slice(b",\"metadata\":");
    let _ = serde_json::to_writer(&mut *out, meta);
    out.extend_from_slice(b",\"items\":[");
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// A prepared document, or 304 when the client holds it already.
fn document(
    doc: &Document,
    if_none_match: Option<&str>,
    extra: &[(&'static str, &'static str)],
) -> Response<Body> {
    let not_modified = doc.matches(if_none_match);
    let mut resp = Response::new(if not_modified {
        empty()
    } else {
        full(doc.body.clone())
    });
    if not_modified {
        *resp.status_mut() = StatusCode::NOT_MODIFIED;
    }
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(doc.content_type),
    );
    if let Ok(etag) = HeaderValue::from_str(&doc.etag) {
        h.insert(header::ETAG, etag);
    }
    for (k, v) in extra {
        h.insert(*k, HeaderValue::from_static(v));
    }
    resp
}
