//! Typed values read from a document are what `serde_json` reads from the same JSON, and so
//! are the errors.

use std::collections::BTreeMap;

use serde::{Deserialize, de::DeserializeOwned};
use serde_json::{Value as Json, json};
use zen_json::Document;

#[derive(Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Spec {
    name: String,
    #[serde(default)]
    replicas: Option<u8>,
    kind: Mode,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    ports: Vec<Port>,
    #[serde(default)]
    ratio: Option<f64>,
    #[serde(default)]
    action: Option<Action>,
    #[serde(default)]
    extra: Option<Json>,
    #[serde(default)]
    pair: Option<(i32, bool)>,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Mode {
    Webhook,
    Events,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct Port {
    port: u16,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
enum Action {
    Drop,
    Rename(String),
    Limit { per_second: u32 },
    Range(i64, i64),
}

#[derive(Debug, PartialEq, Deserialize)]
struct Flattened {
    id: i64,
    #[serde(flatten)]
    rest: BTreeMap<String, Json>,
}

/// `T` from the document and from `serde_json`, with their errors as text.
fn both<T: DeserializeOwned + PartialEq + std::fmt::Debug>(text: &str) {
    let json: Json = serde_json::from_str(text).expect("JSON");
    let doc = Document::parse(text).expect("JSON");
    let theirs = T::deserialize(&json).map_err(|e| e.to_string());
    let ours = doc.root().deserialize::<T>().map_err(|e| e.to_string());
    assert_eq!(ours, theirs, "{text}");
}

#[test]
fn typed_values_and_their_errors_are_serde_jsons() {
    let good = json!({
        "name": "a", "replicas": 3, "kind": "webhook",
        "labels": {"z": "1", "a": "2"},
        "ports": [{"port": 80}, {"port": 443, "name": "https"}],
        "ratio": 0.5, "action": {"limit": {"perSecond": 9}},
        "extra": {"deep": [1, {"x": null}]}, "pair": [-4, true]
    });
    let cases = [
        good.clone(),
        json!({"name": "a", "kind": "events"}),
        json!({"name": "a", "kind": "events", "action": "drop"}),
        json!({"name": "a", "kind": "events", "action": {"rename": "b"}}),
        json!({"name": "a", "kind": "events", "action": {"range": [1, 2]}}),
        // Wrong types, ranges and shapes, each somewhere else.
        json!({"name": 5, "kind": "events"}),
        json!({"name": "a", "kind": "other"}),
        json!({"name": "a", "kind": 1}),
        json!({"name": "a", "kind": "events", "replicas": 300}),
        json!({"name": "a", "kind": "events", "replicas": -1}),
        json!({"name": "a", "kind": "events", "replicas": 1.5}),
        json!({"name": "a", "kind": "events", "labels": {"a": 1}}),
        json!({"name": "a", "kind": "events", "labels": []}),
        json!({"name": "a", "kind": "events", "ports": [{"port": 80, "nope": 1}]}),
        json!({"name": "a", "kind": "events", "ports": [{"port": 70000}]}),
        json!({"name": "a", "kind": "events", "ports": {}}),
        json!({"name": "a", "kind": "events", "ratio": "x"}),
        json!({"name": "a", "kind": "events", "ratio": 3}),
        json!({"name": "a", "kind": "events", "action": {}}),
        json!({"name": "a", "kind": "events", "action": {"drop": null, "rename": "x"}}),
        json!({"name": "a", "kind": "events", "action": {"rename": 1}}),
        json!({"name": "a", "kind": "events", "action": {"limit": 1}}),
        json!({"name": "a", "kind": "events", "action": "rename"}),
        json!({"name": "a", "kind": "events", "action": {"drop": 1}}),
        json!({"name": "a", "kind": "events", "action": 7}),
        json!({"name": "a", "kind": "events", "pair": [1]}),
        json!({"name": "a", "kind": "events", "pair": [1, true, 3]}),
        json!({"kind": "events"}),
        json!(["a", 1, "webhook"]),
        json!("a string"),
        json!(null),
        json!(12345678901234567890u64),
    ];
    for case in &cases {
        both::<Spec>(&case.to_string());
        both::<Option<Spec>>(&case.to_string());
        both::<Json>(&case.to_string());
        both::<Flattened>(&case.to_string());
    }
    // Keys out of order, repeated, escaped; numbers of every kind.
    for text in [
        r#"{"kind": "events", "name": "b", "name": "a"}"#,
        r#"{"na\u006de": "\u00e9", "kind": "events", "labels": {"b": "1", "a": "2", "b": "3"}}"#,
        r#"{"id": -3, "b": 1.0, "a": [1e3, -0, 18446744073709551615]}"#,
        r#"{"id": 9223372036854775808}"#,
        r#"{"id": 1.5}"#,
    ] {
        both::<Spec>(text);
        both::<Json>(text);
        both::<Flattened>(text);
        both::<BTreeMap<String, Json>>(text);
    }
    both::<Vec<u64>>("[1, 2, 18446744073709551615]");
    both::<Vec<i8>>("[1, -129]");
    both::<(u8, String)>(r#"[1, "a"]"#);
    both::<(u8, String)>(r#"[1, "a", 2]"#);
    both::<char>(r#""x""#);
    both::<char>(r#""xy""#);
    both::<()>("null");
    both::<()>("1");
    both::<bool>("true");
    both::<bool>("0");
    both::<String>(r#""tab\there""#);
}

#[test]
fn recorded_traffic_reads_into_values_as_serde_json_reads_it() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/testdata/kube-apiserver-1.28/admission");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).expect("recordings") {
        let text = std::fs::read_to_string(entry.expect("entry").path()).expect("read");
        both::<Json>(&text);
        seen += 1;
    }
    assert!(seen > 20, "{seen} recordings");
}
