//! An Ingestor's CEL: the filter, the mapping to Observation fields and the dedup key,
//! compiled once per Ingestor and run with one cost budget per delivery.

use std::time::Duration;

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use zen_cel::{Budget, EvalError, Program, Variables, compile, with_stack};
use zen_crds::Ingestor;

/// Observation fields a mapping computes: the name in `spec`, whether it must be present,
/// and whether it is a string (else an object).
const FIELDS: [(&str, bool, bool); 10] = [
    ("source", false, true),
    ("category", true, true),
    ("severity", true, true),
    ("eventType", true, true),
    ("title", false, true),
    ("description", false, true),
    ("resource", false, false),
    ("details", false, false),
    ("detectedAt", false, true),
    ("fingerprint", false, true),
];

/// Units a delivery may spend on an async worker thread: a fraction of a millisecond of
/// direct evaluation. A delivery that needs more is run again on the blocking pool.
pub const QUICK_BUDGET: u64 = 4096;

/// Default dedup window (DESIGN.md: repeats inside it bump `status.count`).
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(300);

pub struct Pipeline {
    ingestor: String,
    filter: Option<Program>,
    mapping: Vec<(&'static str, bool, bool, Program)>,
    dedup: Option<(Option<Program>, Duration)>,
    ttl_seconds: Option<u64>,
    /// Every expression evaluates directly (see [`Pipeline::run_quick`]).
    direct: bool,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PipelineError {
    #[error("filter: {0}")]
    Filter(EvalError),
    #[error("mapping of spec.{field}: {message}")]
    Mapping {
        field: &'static str,
        message: String,
    },
    #[error("dedup key: {0}")]
    DedupKey(String),
}

/// What a delivery becomes.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// The filter said no.
    Dropped,
    Observe {
        spec: Value,
        /// The dedup key and window, when the Ingestor deduplicates.
        dedup: Option<(String, Duration)>,
    },
}

impl Pipeline {
    /// Compiles an Ingestor's expressions; the error names the field.
    pub fn compile(ingestor: &Ingestor) -> Result<Self, String> {
        let spec = &ingestor.spec;
        let program =
            |field: &str, text: &str| compile(text).map_err(|e| format!("spec.{field}: {e}"));
        let filter = spec
            .filter
            .as_ref()
            .map(|f| program("filter", &f.0))
            .transpose()?;
        let mapping = spec
            .mapping
            .as_ref()
            .ok_or("webhook sources need spec.mapping")?;
        let value = serde_json::to_value(mapping).map_err(|e| e.to_string())?;
        let mut compiled = Vec::new();
        for (field, required, string) in FIELDS {
            if let Some(text) = value.get(field).and_then(Value::as_str) {
                compiled.push((
                    field,
                    required,
                    string,
                    program(&format!("mapping.{field}"), text)?,
                ));
            }
        }
        let dedup = spec
            .dedup
            .as_ref()
            .map(|d| -> Result<_, String> {
                let key = d
                    .key
                    .as_ref()
                    .map(|k| program("dedup.key", &k.0))
                    .transpose()?;
                let window = d.window.as_ref().map_or(DEFAULT_WINDOW, |w| w.as_std());
                Ok((key, window))
            })
            .transpose()?;
        let ttl_seconds = spec
            .ttl
            .as_ref()
            .and_then(|t| t.default.as_ref())
            .map(|d| d.as_std().as_secs().max(1));
        let direct = filter.iter().all(Program::is_direct)
            && compiled.iter().all(|(.., p)| p.is_direct())
            && dedup
                .as_ref()
                .and_then(|(key, _)| key.as_ref())
                .is_none_or(Program::is_direct);
        Ok(Self {
            ingestor: ingestor.metadata.name.clone().unwrap_or_default(),
            filter,
            mapping: compiled,
            dedup,
            ttl_seconds,
            direct,
        })
    }

    /// Runs filter, mapping and dedup key for one delivery from `source`.
    pub fn run(
        &self,
        source: &str,
        payload: &Value,
        headers: &Value,
    ) -> Result<Outcome, PipelineError> {
        self.run_within(source, payload, headers, &mut Budget::default())
    }

    /// [`run`](Self::run) where it is sure to be quick: every expression evaluated directly
    /// and done within [`QUICK_BUDGET`]. `None` where the delivery needs more (then it goes
    /// to [`run`](Self::run), off the async workers; the pipeline is a pure function of its
    /// inputs, so running it again gives what a single run would).
    pub fn run_quick(
        &self,
        source: &str,
        payload: &Value,
        headers: &Value,
    ) -> Option<Result<Outcome, PipelineError>> {
        if !self.direct {
            return None;
        }
        let mut budget = Budget::new(QUICK_BUDGET);
        match self.run_within(source, payload, headers, &mut budget) {
            Err(_) if budget.spent() >= QUICK_BUDGET => None,
            done => Some(done),
        }
    }

    fn run_within(
        &self,
        source: &str,
        payload: &Value,
        headers: &Value,
        budget: &mut Budget,
    ) -> Result<Outcome, PipelineError> {
        with_stack(|| {
            let mut vars = Variables::new();
            vars.set("payload", payload);
            vars.set("headers", headers);
            if let Some(filter) = &self.filter
                && !filter
                    .evaluate_bool(&vars, budget)
                    .map_err(PipelineError::Filter)?
            {
                return Ok(Outcome::Dropped);
            }
            let mut spec = Map::new();
            for (field, required, string, program) in &self.mapping {
                let value =
                    program
                        .evaluate(&vars, budget)
                        .map_err(|e| PipelineError::Mapping {
                            field,
                            message: e.to_string(),
                        })?;
                let ok = match (&value, *string) {
                    (Value::Null, _) => !*required,
                    (Value::String(_), true) | (Value::Object(_), false) => true,
                    _ => false,
                };
                if !ok {
                    return Err(PipelineError::Mapping {
                        field,
                        message: format!(
                            "expected {}, got {}",
                            if *string { "a string" } else { "a map" },
                            kind(&value)
                        ),
                    });
                }
                if !value.is_null() {
                    spec.insert((*field).into(), value);
                }
            }
            spec.entry("source").or_insert_with(|| json!(source));
            let fingerprint = match spec.get("fingerprint").and_then(Value::as_str) {
                Some(f) => f.to_owned(),
                None => {
                    let f = default_fingerprint(&spec);
                    spec.insert("fingerprint".into(), json!(f));
                    f
                }
            };
            spec.insert("ingestor".into(), json!(self.ingestor));
            if let Some(ttl) = self.ttl_seconds {
                spec.insert("ttlSecondsAfterCreation".into(), json!(ttl));
            }
            let dedup = match &self.dedup {
                None => None,
                Some((None, window)) => Some((fingerprint, *window)),
                Some((Some(key), window)) => {
                    let key = match key.evaluate(&vars, budget) {
                        Ok(Value::String(s)) => s,
                        Ok(other) => other.to_string(),
                        Err(e) => return Err(PipelineError::DedupKey(e.to_string())),
                    };
                    Some((key, *window))
                }
            };
            Ok(Outcome::Observe {
                spec: Value::Object(spec),
                dedup,
            })
        })
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a bool",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

/// Source, event type and resource: what makes two signals "the same" by default.
fn default_fingerprint(spec: &Map<String, Value>) -> String {
    let mut h = Sha256::new();
    for field in ["source", "eventType", "resource"] {
        h.update(spec.get(field).map(Value::to_string).unwrap_or_default());
        h.update([0]);
    }
    hex(&h.finalize()[..16])
}

/// Lowercase hex, as names and keys carry digests (one `format!` per byte would cost more
/// than the hash on every delivery).
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lowercase_and_two_digits_a_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        assert_eq!(hex(&[]), "");
    }

    fn ingestor(extra: Value) -> Ingestor {
        let mut spec = json!({
            "sources": [{"name": "falco", "type": "webhook", "auth": {"type": "none"}}],
            "filter": "payload.priority != 'Debug'",
            "mapping": {
                "category": "'security'",
                "severity": "payload.priority == 'Critical' ? 'critical' : 'medium'",
                "eventType": "'runtime_alert'",
                "title": "payload.rule",
                "resource": "{'kind': 'Pod', 'name': payload.output_fields['k8s.pod.name']}"
            },
            "ttl": {"default": "1h"}
        });
        if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
            s.extend(e.clone());
        }
        serde_json::from_value(json!({
            "apiVersion": "config.zen.watcher.io/v1alpha1", "kind": "Ingestor",
            "metadata": {"name": "falco", "namespace": "sec"}, "spec": spec
        }))
        .unwrap()
    }

    fn falco(priority: &str) -> Value {
        json!({"priority": priority, "rule": "Terminal shell in container",
               "output_fields": {"k8s.pod.name": "web-1"}})
    }

    #[test]
    fn filter_mapping_and_defaults() {
        let p = Pipeline::compile(&ingestor(json!({}))).unwrap();
        assert_eq!(
            p.run("falco", &falco("Debug"), &json!({})).unwrap(),
            Outcome::Dropped
        );
        let Outcome::Observe { spec, dedup } =
            p.run("falco", &falco("Critical"), &json!({})).unwrap()
        else {
            panic!("observed")
        };
        assert_eq!(spec["severity"], "critical");
        assert_eq!(spec["source"], "falco");
        assert_eq!(spec["ingestor"], "falco");
        assert_eq!(spec["title"], "Terminal shell in container");
        assert_eq!(spec["resource"]["name"], "web-1");
        assert_eq!(spec["ttlSecondsAfterCreation"], 3600);
        assert_eq!(spec["fingerprint"].as_str().unwrap().len(), 32);
        assert_eq!(dedup, None);
    }

    #[test]
    fn quick_runs_answer_as_full_ones_or_hand_over() {
        let p = Pipeline::compile(&ingestor(json!({}))).unwrap();
        for payload in [falco("Debug"), falco("Critical"), json!({})] {
            assert_eq!(
                p.run_quick("falco", &payload, &json!({})),
                Some(p.run("falco", &payload, &json!({}))),
                "{payload}"
            );
        }
        // More work than a quick run may do: handed over, and the full run decides.
        let p = Pipeline::compile(&ingestor(json!({
            "filter": "payload.items.all(i, payload.items.exists(j, j == i))"
        })))
        .unwrap();
        let payload = json!({"items": (0..200).collect::<Vec<_>>(), "rule": "r", "priority": "Critical",
                             "output_fields": {"k8s.pod.name": "web-1"}});
        assert_eq!(p.run_quick("falco", &payload, &json!({})), None);
        assert!(matches!(
            p.run("falco", &payload, &json!({})),
            Ok(Outcome::Observe { .. })
        ));
        // An expression the interpreter evaluates is never run on an async worker.
        let p = Pipeline::compile(&ingestor(json!({"filter": "type(payload) == map"}))).unwrap();
        assert_eq!(p.run_quick("falco", &falco("Critical"), &json!({})), None);
    }

    #[test]
    fn dedup_key_defaults_to_the_fingerprint() {
        let p = Pipeline::compile(&ingestor(json!({"dedup": {"window": "10m"}}))).unwrap();
        let Outcome::Observe { spec, dedup } =
            p.run("falco", &falco("Critical"), &json!({})).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            dedup,
            Some((
                spec["fingerprint"].as_str().unwrap().to_owned(),
                Duration::from_secs(600)
            ))
        );
        let p = Pipeline::compile(&ingestor(json!({"dedup": {"key": "payload.rule"}}))).unwrap();
        let Outcome::Observe { dedup, .. } =
            p.run("falco", &falco("Critical"), &json!({})).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            dedup,
            Some(("Terminal shell in container".into(), DEFAULT_WINDOW))
        );
    }

    #[test]
    fn a_mapping_of_the_wrong_type_names_its_field() {
        let p = Pipeline::compile(&ingestor(json!({}))).unwrap();
        let err = p
            .run(
                "falco",
                &json!({"priority": "Critical", "rule": 7, "output_fields": {}}),
                &json!({}),
            )
            .unwrap_err();
        assert!(err.to_string().contains("spec.title"), "{err}");
        // A missing payload field is an evaluation error of its mapping, not a panic.
        let err = p.run("falco", &json!({}), &json!({})).unwrap_err();
        assert!(matches!(err, PipelineError::Filter(_)), "{err}");
    }
}
