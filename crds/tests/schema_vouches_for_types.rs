//! The admission webhook reads an Ingestor from its JSON without decoding it into the
//! `Ingestor` type, on the strength of its schema: every object the schema accepts must
//! decode. These tests hold the schema to that, over every change of one value (or removal
//! of one field) of a few Ingestors that together set every field.

use serde_json::{Value, json};
use zen_crds::{Ingestor, manifest, schema::SchemaValidator};
use zen_json::Document;

/// Stands for the value under test in the serialized object, replaced by its text.
const HOLE: &str = "\"@@value under test@@\"";

/// JSON texts put in place of each value in turn: every type, numbers at and past the
/// bounds of the integer types, numbers that are integral only in value, strings of the
/// enums, durations and names, and containers.
const CANDIDATES: &[&str] = &[
    "null",
    "true",
    "false",
    "0",
    "1",
    "-1",
    "1.0",
    "1.5",
    "-0",
    "1e2",
    "100000",
    "100001",
    "10485760",
    "10485761",
    "2147483647",
    "2147483648",
    "-2147483649",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775809",
    "18446744073709551616",
    "1e400",
    "\"\"",
    "\"x\"",
    "\"5m\"",
    "\"-5m\"",
    "\"1h30m\"",
    "\"0s\"",
    "\"1.5h\"",
    "\"999999999999h\"",
    "\"5 m\"",
    "\"Warning\"",
    "\"warning\"",
    "\"webhook\"",
    "\"kubernetesEvents\"",
    "\"none\"",
    "\"hmac\"",
    "\"github\"",
    "\"sha256\"",
    "\"hex\"",
    "\"X-Header\"",
    "\"a.b\"",
    "\"\\u0000\"",
    "\"é\"",
    "[]",
    "[null]",
    "[\"x\"]",
    "[1]",
    "[\"Warning\", \"Warning\"]",
    "{}",
    "{\"name\": \"x\"}",
    "{\"name\": \"x\", \"type\": \"kubernetesEvents\"}",
];

/// Ingestors that between them set every field of the spec.
fn seeds() -> Vec<Value> {
    let spec = |spec: Value| {
        json!({
            "apiVersion": "config.zen.watcher.io/v1alpha1",
            "kind": "Ingestor",
            "metadata": {"name": "seed", "namespace": "default"},
            "spec": spec,
        })
    };
    let mapping = json!({
        "source": "'s'", "category": "'c'", "severity": "'high'", "eventType": "'e'",
        "title": "'t'", "description": "'d'", "resource": "{}", "details": "{}",
        "detectedAt": "'2026-01-01T00:00:00Z'", "fingerprint": "'f'",
    });
    vec![
        spec(json!({
            "sources": [{
                "name": "hook",
                "type": "webhook",
                "auth": {
                    "type": "hmac",
                    "secretRef": {"name": "hook-secret", "key": "secret"},
                    "hmac": {
                        "preset": "generic", "header": "X-Signature", "prefix": "sha256=",
                        "algorithm": "sha256", "encoding": "hex",
                    },
                    "replay": {
                        "window": "5m", "timestampHeader": "X-Timestamp",
                        "deliveryIdHeader": "X-Delivery",
                    },
                },
                "rateLimit": {"requestsPerSecond": 50, "burst": 100},
                "maxBodyBytes": 65536,
            }],
            "filter": "true",
            "mapping": mapping,
            "dedup": {"window": "10m", "key": "payload.id"},
            "ttl": {"default": "24h", "max": "720h"},
        })),
        spec(json!({
            "sources": [
                {
                    "name": "events",
                    "type": "kubernetesEvents",
                    "kubernetesEvents": {
                        "types": ["Warning", "Normal"],
                        "reasons": ["BackOff"],
                        "involvedKinds": ["Pod"],
                    },
                },
                {"name": "open", "type": "webhook", "auth": {"type": "none"}},
            ],
            "mapping": mapping,
        })),
    ]
}

/// Every value's JSON pointer, and every field's (to remove it).
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let p = format!("{at}/{k}");
                out.push(p.clone());
                pointers(v, p, out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                let p = format!("{at}/{i}");
                out.push(p.clone());
                pointers(v, p, out);
            }
        }
        _ => {}
    }
}

fn validator() -> SchemaValidator {
    let (_, crd) = zen_crds::crd::definitions()
        .into_iter()
        .find(|(_, crd)| crd.spec.names.kind == "Ingestor")
        .expect("the Ingestor CRD");
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .expect("a schema");
    SchemaValidator::new(serde_json::to_value(schema).unwrap()).unwrap()
}

/// Checks one object's text as the webhook reads it; returns whether the schema accepted it.
fn accepted_objects_decode(validator: &SchemaValidator, text: &str, what: &str) -> bool {
    let Ok(doc) = Document::parse(text) else {
        return false;
    };
    if !validator.check(doc.root()).errors.is_empty() {
        return false;
    }
    if let Err(e) = manifest::decode::<Ingestor, _>(doc.root()) {
        panic!("{what}: the schema accepts {text}\nbut it does not decode: {e}");
    }
    true
}

#[test]
fn every_object_the_schema_accepts_decodes() {
    let validator = validator();
    let (mut accepted, mut refused) = (0, 0);
    for seed in seeds() {
        let text = seed.to_string();
        assert!(
            accepted_objects_decode(&validator, &text, "seed"),
            "the seed itself is refused: {text}"
        );
        let mut paths = vec!["/spec".to_owned()];
        pointers(&seed["spec"], "/spec".to_owned(), &mut paths);
        for path in &paths {
            let mut removed = seed.clone();
            let (parent, last) = path.rsplit_once('/').unwrap();
            match removed.pointer_mut(parent).unwrap() {
                Value::Object(map) => {
                    map.remove(last);
                }
                Value::Array(items) => {
                    items.remove(last.parse::<usize>().unwrap());
                }
                _ => unreachable!(),
            }
            let what = format!("without {path}");
            match accepted_objects_decode(&validator, &removed.to_string(), &what) {
                true => accepted += 1,
                false => refused += 1,
            }
            let mut holed = seed.clone();
            *holed.pointer_mut(path).unwrap() = serde_json::from_str(HOLE).unwrap();
            let holed = holed.to_string();
            for candidate in CANDIDATES {
                let text = holed.replace(HOLE, candidate);
                let what = format!("{path} = {candidate}");
                match accepted_objects_decode(&validator, &text, &what) {
                    true => accepted += 1,
                    false => refused += 1,
                }
            }
        }
    }
    // The variations must exercise both sides of the schema, or the test shows nothing.
    assert!(accepted > 200, "only {accepted} variations accepted");
    assert!(refused > 1000, "only {refused} variations refused");
}
