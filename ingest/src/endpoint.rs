//! The endpoints the current Ingestors provision, rebuilt whenever Ingestors or Secrets
//! change. What must outlive a rebuild does: the delivery ids of the replay window, the
//! rate-limit buckets, and a replaced secret, which keeps verifying for one replay window so
//! senders can switch over.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant},
};

use zen_crds::{
    Ingestor,
    ingestor::{AuthType, SourceType},
};

use crate::{
    events::EventSource,
    limit::TokenBucket,
    pipeline::Pipeline,
    replay::DeliveryIds,
    signature::{Scheme, Verifier},
    view::Counters,
};

/// Secret values by (namespace, name), then key.
pub type SecretValues = BTreeMap<(String, String), BTreeMap<String, Vec<u8>>>;

/// Body size when an Ingestor sets none.
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;
/// Age limit of signed timestamps and memory of delivery ids when an Ingestor sets none.
pub const DEFAULT_REPLAY_WINDOW: Duration = Duration::from_secs(300);

pub struct Endpoint {
    pub namespace: String,
    pub ingestor: String,
    pub source: String,
    pub path: String,
    pub verifier: Verifier,
    /// The secrets replaced by the last change, accepted until the instant given.
    pub previous: Option<(Vec<Vec<u8>>, Instant)>,
    pub replay_window: Duration,
    /// The header carrying delivery ids, and the ids seen.
    pub delivery_ids: Option<(String, Arc<DeliveryIds>)>,
    pub bucket: Option<Arc<TokenBucket>>,
    pub(crate) rate: Option<(u32, u32)>,
    pub max_body: usize,
    pub pipeline: Arc<Pipeline>,
    pub(crate) auth_type: AuthType,
    /// Kept across rebuilds of the same path.
    pub counters: Arc<Counters>,
}

impl Endpoint {
    pub fn labels(&self) -> [&str; 3] {
        [&self.namespace, &self.ingestor, &self.source]
    }
}

/// The path of a webhook source.
pub fn path(namespace: &str, ingestor: &str, source: &str) -> String {
    format!("/hooks/{namespace}/{ingestor}/{source}")
}

/// Why an Ingestor (or one of its sources) is not served; `reason` is the Ready condition's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub reason: &'static str,
    pub message: String,
}

impl Problem {
    fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

/// Deliveries of one Ingestor that its mapping could not turn into an Observation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MappingFailures {
    pub count: u64,
    pub last: String,
}

/// The sources the current Ingestors provision: webhook endpoints by path and
/// kubernetesEvents sources.
#[derive(Default)]
pub struct Endpoints {
    by_path: RwLock<HashMap<String, Arc<Endpoint>>>,
    events: RwLock<Vec<Arc<EventSource>>>,
    /// By `namespace/ingestor`; kept across rebuilds.
    failures: Mutex<HashMap<String, MappingFailures>>,
}

impl Endpoints {
    pub fn get(&self, path: &str) -> Option<Arc<Endpoint>> {
        self.by_path
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(path)
            .cloned()
    }

    /// The endpoint whose WebhookEndpoint is `namespace/name` (`<ingestor>-<source>`).
    pub fn find(&self, namespace: &str, name: &str) -> Option<Arc<Endpoint>> {
        self.all().into_iter().find(|e| {
            e.namespace == namespace
                && name
                    .strip_prefix(e.ingestor.as_str())
                    .and_then(|r| r.strip_prefix('-'))
                    == Some(e.source.as_str())
        })
    }

    pub fn all(&self) -> Vec<Arc<Endpoint>> {
        self.by_path
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    pub fn paths(&self) -> Vec<String> {
        let mut paths: Vec<String> = self
            .by_path
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        paths.sort();
        paths
    }

    pub fn event_sources(&self) -> Vec<Arc<EventSource>> {
        self.events
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Counts a delivery of `namespace/ingestor` that its mapping could not turn into an
    /// Observation; the Ingestor's status reports it.
    pub fn mapping_failed(&self, namespace: &str, ingestor: &str, message: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let f = failures
            .entry(format!("{namespace}/{ingestor}"))
            .or_default();
        f.count += 1;
        f.last = message.to_owned();
    }

    pub fn mapping_failures(&self, namespace: &str, ingestor: &str) -> Option<MappingFailures> {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&format!("{namespace}/{ingestor}"))
            .cloned()
    }

    /// Replaces the sources with those of `ingestors`. Returns, per Ingestor
    /// (`namespace/name`) that could not be served in full, why.
    pub fn load(&self, ingestors: &[Ingestor], secrets: &SecretValues) -> Vec<(String, Problem)> {
        let now = Instant::now();
        let old = self
            .by_path
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut next = HashMap::new();
        let mut events = Vec::new();
        let mut errors = Vec::new();
        for ingestor in ingestors {
            let namespace = ingestor
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into());
            let name = ingestor.metadata.name.clone().unwrap_or_default();
            if ingestor.spec.sources.is_empty() {
                continue;
            }
            let pipeline = match Pipeline::compile(ingestor) {
                Ok(p) => Arc::new(p),
                Err(e) => {
                    errors.push((
                        format!("{namespace}/{name}"),
                        Problem::new("InvalidExpression", e),
                    ));
                    continue;
                }
            };
            for source in &ingestor.spec.sources {
                if source.type_ == SourceType::KubernetesEvents {
                    events.push(Arc::new(EventSource::new(
                        &namespace, &name, source, &pipeline,
                    )));
                    continue;
                }
                let path = path(&namespace, &name, &source.name);
                match build(
                    &namespace,
                    &name,
                    source,
                    secrets,
                    &pipeline,
                    old.get(&path),
                    now,
                ) {
                    Ok(e) => {
                        next.insert(path, Arc::new(e));
                    }
                    Err(e) => errors.push((format!("{namespace}/{name}"), e)),
                }
            }
        }
        *self.by_path.write().unwrap_or_else(|p| p.into_inner()) = next;
        *self.events.write().unwrap_or_else(|p| p.into_inner()) = events;
        errors
    }
}

fn build(
    namespace: &str,
    ingestor: &str,
    source: &zen_crds::ingestor::Source,
    secrets: &SecretValues,
    pipeline: &Arc<Pipeline>,
    old: Option<&Arc<Endpoint>>,
    now: Instant,
) -> Result<Endpoint, Problem> {
    let invalid = |m: String| Problem::new("InvalidSource", m);
    let auth = source
        .auth
        .as_ref()
        .ok_or_else(|| invalid(format!("source {}: webhook sources need auth", source.name)))?;
    let secret = match &auth.secret_ref {
        Some(r) => {
            let value = secrets
                .get(&(namespace.to_owned(), r.name.clone()))
                .and_then(|data| data.get(&r.key))
                .ok_or_else(|| {
                    Problem::new(
                        "SecretNotFound",
                        format!(
                            "source {}: Secret {namespace}/{} has no key {:?} (or does not exist)",
                            source.name, r.name, r.key
                        ),
                    )
                })?;
            vec![value.clone()]
        }
        None => Vec::new(),
    };
    let scheme = match auth.type_ {
        AuthType::None => Scheme::None,
        AuthType::Bearer => Scheme::Bearer,
        AuthType::Hmac => Scheme::hmac(auth.hmac.as_ref().ok_or_else(|| {
            invalid(format!(
                "source {}: auth type hmac needs hmac settings",
                source.name
            ))
        })?),
        AuthType::Mtls => Scheme::Mtls,
    };
    let replay_window = auth
        .replay
        .as_ref()
        .and_then(|r| r.window.as_ref())
        .map_or(DEFAULT_REPLAY_WINDOW, |w| w.as_std());
    let id_header = auth
        .replay
        .as_ref()
        .and_then(|r| r.delivery_id_header.clone())
        .map(|h| h.to_ascii_lowercase())
        .or_else(|| {
            Scheme::delivery_id_header(auth.hmac.as_ref().and_then(|h| h.preset)).map(str::to_owned)
        });
    // Kept across rebuilds while the window and header stay: a reload must not reopen it.
    let delivery_ids = id_header.map(|h| {
        let ids = old
            .and_then(|o| o.delivery_ids.as_ref())
            .filter(|(oh, _)| *oh == h && o_window(old) == Some(replay_window))
            .map(|(_, ids)| ids.clone())
            .unwrap_or_else(|| Arc::new(DeliveryIds::new(replay_window)));
        (h, ids)
    });
    let rate = source.rate_limit.as_ref().map(|r| {
        let rps = u32::try_from(r.requests_per_second).unwrap_or(1);
        (
            rps,
            r.burst.and_then(|b| u32::try_from(b).ok()).unwrap_or(rps),
        )
    });
    let bucket = rate.map(|(rps, burst)| {
        old.filter(|o| o.rate == rate)
            .and_then(|o| o.bucket.clone())
            .unwrap_or_else(|| Arc::new(TokenBucket::new(rps, burst)))
    });
    // A changed secret: the old one stays valid for one replay window.
    let previous = match old {
        Some(o) if o.verifier.secrets != secret && !o.verifier.secrets.is_empty() => {
            Some((o.verifier.secrets.clone(), now + replay_window))
        }
        Some(o) => o.previous.clone().filter(|(_, until)| *until > now),
        None => None,
    };
    Ok(Endpoint {
        namespace: namespace.to_owned(),
        ingestor: ingestor.to_owned(),
        source: source.name.clone(),
        path: path(namespace, ingestor, &source.name),
        verifier: Verifier::new(scheme, secret)
            .map_err(|e| invalid(format!("source {}: {e}", source.name)))?,
        previous,
        replay_window,
        delivery_ids,
        bucket,
        rate,
        max_body: source
            .max_body_bytes
            .and_then(|b| usize::try_from(b).ok())
            .unwrap_or(DEFAULT_MAX_BODY),
        pipeline: pipeline.clone(),
        auth_type: auth.type_,
        counters: old.map(|o| o.counters.clone()).unwrap_or_default(),
    })
}

fn o_window(old: Option<&Arc<Endpoint>>) -> Option<Duration> {
    old.map(|o| o.replay_window)
}
