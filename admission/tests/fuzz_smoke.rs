//! Bounded, deterministic fuzzing of the webhook on stable Rust (the cargo-fuzz targets in
//! `fuzz/` need nightly). The AdmissionReviews kube-apiserver 1.28 sent (the recordings), and
//! the same envelopes around the example Ingestors and the default IngestorPolicies, are
//! mutated byte by byte (flips, inserts, deletes, truncation, splices of deep nesting, huge
//! numbers, long strings) and as JSON (values replaced by random values of any type, members
//! deleted, request fields and CEL expressions swapped), and every answer is checked:
//!
//! - no panic (a panicking input is written to the temp directory and its path printed);
//! - an answer is an `admission.k8s.io/v1` AdmissionReview whose `response.uid` is the
//!   request's uid, a denial has a status code in 400..600 and an allowance none;
//! - a patch comes only from the mutating webhook, is base64 of JSON patch operations, applies
//!   to the request's object, and mutating the patched object again patches nothing.
//!
//! A run is a fixed sequence: `ZEN_FUZZ_SEED` and `ZEN_FUZZ_ITERATIONS` change it for longer
//! local runs, and `ZEN_FUZZ_REPLAY=FILE` runs a saved input first. Both tests together stay at a few thousand inputs, a few seconds in debug builds.

use std::{
    collections::BTreeMap,
    panic::{AssertUnwindSafe, catch_unwind},
    path::Path,
    sync::Arc,
};

use base64::Engine;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use zen_admission::{Admission, Mode, StaticCluster, review::ReviewError};
use zen_crds::manifest::{self, Object};

const RECORDINGS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/testdata/kube-apiserver-1.28/admission"
);
const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// xorshift64*: small, fast, and the same sequence on every machine.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// True `percent` times in a hundred.
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn admission() -> Admission {
    let mut cluster = StaticCluster::default();
    cluster.insert_namespace(
        "open".into(),
        BTreeMap::from([("zen.watcher.io/allow-unauthenticated".into(), "true".into())]),
    );
    cluster.insert_namespace("default".into(), BTreeMap::new());
    cluster.insert_secret(
        "platform".into(),
        "github-webhook".into(),
        vec!["secret".into()],
    );
    let admission = Admission::new(Arc::new(cluster), None).unwrap();
    let policies = default_policies();
    assert_eq!(policies.len(), 3);
    assert!(admission.set_policies(&policies).is_empty());
    admission
}

fn default_policies() -> Vec<zen_crds::IngestorPolicy> {
    let dir = Path::new(ROOT).join("manifests/policies");
    let mut policies = Vec::new();
    for file in ["baseline.yaml", "defaults.yaml"] {
        for o in manifest::load_file(&dir.join(file)).unwrap() {
            if let Object::IngestorPolicy(p) = o {
                policies.push(*p);
            }
        }
    }
    policies
}

/// One input to start from: which webhook it went to and its exact body.
#[derive(Clone)]
struct Seed {
    name: String,
    mode: Mode,
    body: Vec<u8>,
}

/// The 28 recorded reviews, byte for byte, and the recorded CREATE envelope around every
/// example Ingestor, an unauthenticated one (denied by a default policy) and every default
/// IngestorPolicy, for both webhooks.
fn seeds() -> Vec<Seed> {
    let mut out = Vec::new();
    let mut envelope = None;
    let mut names: Vec<_> = std::fs::read_dir(RECORDINGS)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for path in names {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let mode = if name.starts_with("mutate-") {
            Mode::Mutate
        } else if name.starts_with("validate-") {
            Mode::Validate
        } else {
            continue;
        };
        let capture: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let body = capture["request"]["bodyRaw"].as_str().unwrap().to_owned();
        if name == "validate-create-alice.json" {
            envelope = Some(serde_json::from_str::<Value>(&body).unwrap());
        }
        out.push(Seed {
            name,
            mode,
            body: body.into_bytes(),
        });
    }
    assert_eq!(out.len(), 28, "recordings changed");
    let envelope = envelope.expect("validate-create-alice.json recorded");

    let mut objects: Vec<(String, Value)> = Vec::new();
    let examples = Path::new(ROOT).join("examples");
    let mut files: Vec<_> = std::fs::read_dir(&examples)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    for file in files {
        for o in manifest::load_file(&file).unwrap() {
            if let Object::Ingestor(i) = o {
                objects.push((
                    file.display().to_string(),
                    serde_json::to_value(&*i).unwrap(),
                ));
            }
        }
    }
    objects.push((
        "unauthenticated".into(),
        json!({
            "apiVersion": "config.zen.watcher.io/v1alpha1", "kind": "Ingestor",
            "metadata": {"name": "open-door", "namespace": "default"},
            "spec": {
                "sources": [{"name": "anyone", "type": "webhook", "auth": {"type": "none"}}],
                "mapping": {"category": "'operations'", "severity": "'info'", "eventType": "'ping'"}
            }
        }),
    ));
    for p in default_policies() {
        objects.push((
            format!("policy {}", p.metadata.name.clone().unwrap_or_default()),
            serde_json::to_value(&p).unwrap(),
        ));
    }
    assert!(objects.len() >= 6, "examples changed");
    for (name, object) in objects {
        let kind = object["kind"].as_str().unwrap().to_owned();
        let mut review = envelope.clone();
        let request = &mut review["request"];
        request["kind"]["kind"] = json!(kind);
        request["requestKind"]["kind"] = json!(kind);
        if kind == "IngestorPolicy" {
            request["resource"]["resource"] = json!("ingestorpolicies");
            request["namespace"] = Value::Null;
        } else {
            request["namespace"] = object["metadata"]["namespace"].clone();
        }
        request["name"] = object["metadata"]["name"].clone();
        request["object"] = object;
        for mode in [Mode::Mutate, Mode::Validate] {
            out.push(Seed {
                name: format!("{name} ({mode:?})"),
                mode,
                body: serde_json::to_vec(&review).unwrap(),
            });
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Byte mutations

/// Pieces spliced into the bytes: nesting far past any parser's limit, numbers no type
/// holds, long and odd strings, broken escapes, invalid UTF-8.
fn fragment(rng: &mut Rng) -> Vec<u8> {
    let deep = 1 + rng.below(5000);
    match rng.below(18) {
        0 => "[".repeat(deep).into_bytes(),
        1 => format!("{}1{}", "[".repeat(deep), "]".repeat(deep)).into_bytes(),
        2 => "{\"a\":".repeat(deep).into_bytes(),
        3 => format!("{}null{}", "{\"a\":".repeat(deep), "}".repeat(deep)).into_bytes(),
        4 => b"1e999999".to_vec(),
        5 => b"-99999999999999999999999999999999999999".to_vec(),
        6 => b"18446744073709551616".to_vec(),
        7 => b"-9223372036854775809".to_vec(),
        8 => b"0.0000000000000000000000000000000000000000000001e-400".to_vec(),
        9 => format!("\"{}\"", "x".repeat(rng.below(200_000))).into_bytes(),
        10 => b"\"\\ud800\"".to_vec(),
        11 => b"\"\\u0000\\\"\\\\\"".to_vec(),
        12 => vec![0xff, 0xfe, 0x80, 0xc0],
        13 => b"null".to_vec(),
        14 => b"{}".to_vec(),
        15 => b"[]".to_vec(),
        16 => b"\"".to_vec(),
        _ => format!("\"{}\"", "\u{1F600}".repeat(rng.below(1000))).into_bytes(),
    }
}

const INTERESTING_BYTES: &[u8] = b"\"\\{}[],:0-e.tn \x00\xff\x80";

fn mutate_bytes(rng: &mut Rng, input: &mut Vec<u8>) {
    if input.is_empty() {
        input.extend(fragment(rng));
        return;
    }
    let at = rng.below(input.len());
    match rng.below(10) {
        0 => input[at] ^= 1 << rng.below(8),
        8 | 9 => {
            // A letter or digit for a letter or digit: the document stays JSON and a name,
            // a type or a CEL expression in it changes.
            if input[at].is_ascii_alphanumeric() {
                input[at] = *rng.pick(b"abcdefghijklmnopqrstuvwxyz0123456789_");
            }
        }
        1 => input[at] = *rng.pick(INTERESTING_BYTES),
        2 => {
            let n = 1 + rng.below(8);
            let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            input.splice(at..at, bytes);
        }
        3 => {
            let end = (at + 1 + rng.below(64)).min(input.len());
            input.drain(at..end);
        }
        4 => input.truncate(at),
        5 => {
            let end = (at + 1 + rng.below(256)).min(input.len());
            let piece = input[at..end].to_vec();
            let to = rng.below(input.len());
            input.splice(to..to, piece);
        }
        6 => {
            let piece = fragment(rng);
            input.splice(at..at, piece);
        }
        _ => {
            // Replace the value after a random `":` with a fragment, keeping the rest of the
            // document intact so the decoder gets past it more often.
            let colons: Vec<usize> = input
                .windows(2)
                .enumerate()
                .filter(|(_, w)| w == b"\":")
                .map(|(i, _)| i + 2)
                .collect();
            if colons.is_empty() {
                return;
            }
            let start = *rng.pick(&colons);
            let end = input[start..]
                .iter()
                .position(|b| matches!(b, b',' | b'}'))
                .map_or(input.len(), |i| start + i);
            let piece = fragment(rng);
            input.splice(start..end, piece);
        }
    }
}

// ---------------------------------------------------------------------------------------
// JSON mutations

/// Strings that mean something somewhere in an Ingestor or a policy.
const STRINGS: &[&str] = &[
    "",
    "webhook",
    "kubernetesEvents",
    "none",
    "hmac",
    "bearer",
    "mtls",
    "github",
    "5m",
    "720h",
    "-1h",
    "9999999999999h",
    "1.5s",
    "Deny",
    "Warn",
    "Audit",
    "Fail",
    "Ignore",
    "/spec/sources/*/rateLimit",
    "/spec/*",
    "/~2",
    "payload.a + payload.b",
    "'x' + payload.s",
    "payload.l.all(x, payload.l.all(y, payload.l.all(z, x + y + z > 0)))",
    "[1,2,3].map(x, [x, x, x, x, x, x, x, x]).map(y, y + y + y + y)",
    "(((((((((((((((((((((((((((1)))))))))))))))))))))))))))",
    "object.spec.sources.all(s, s.type == 'webhook')",
    "has(payload.a) ? payload.a : null",
    "duration('99999999999h')",
    "timestamp('9999-12-31T23:59:59Z') + duration('1s')",
    "int('9223372036854775807') + 1",
    "-9223372036854775808 / -1",
    "1 / 0",
    "1 % 0",
    "'abc'.matches('(a*)*b')",
    "'\u{0}'",
    "'unterminated",
    "}{)(",
    "\u{202e}\u{fffd}\u{1F600}",
];

fn random_string(rng: &mut Rng) -> String {
    match rng.below(4) {
        0 => "a".repeat(rng.below(50_000)),
        1 => {
            let n = rng.below(40);
            (0..n)
                .map(|_| char::from_u32(rng.below(0x3000) as u32).unwrap_or('?'))
                .collect()
        }
        _ => (*rng.pick(STRINGS)).to_owned(),
    }
}

fn random_number(rng: &mut Rng) -> Value {
    match rng.below(9) {
        0 => json!(0),
        1 => json!(-1),
        2 => json!(i64::MAX),
        3 => json!(i64::MIN),
        4 => json!(u64::MAX),
        5 => json!(1e308),
        6 => json!(-0.0),
        7 => json!(0.5),
        _ => json!(rng.next() as i64),
    }
}

/// A random JSON value; `depth` bounds how deep it nests (past serde_json's limit of 128
/// sometimes, on purpose).
fn random_value(rng: &mut Rng, depth: usize) -> Value {
    let kind = if depth == 0 {
        rng.below(4)
    } else {
        rng.below(8)
    };
    match kind {
        0 => Value::Null,
        1 => json!(rng.chance(50)),
        2 => random_number(rng),
        3 => json!(random_string(rng)),
        4 => Value::Array(
            (0..rng.below(4))
                .map(|_| random_value(rng, depth - 1))
                .collect(),
        ),
        5 => {
            let mut m = Map::new();
            for _ in 0..rng.below(4) {
                let key = if rng.chance(50) {
                    (*rng.pick(&["type", "auth", "sources", "spec", "ttl", "max", "name"]))
                        .to_owned()
                } else {
                    random_string(rng)
                };
                m.insert(key, random_value(rng, depth - 1));
            }
            Value::Object(m)
        }
        6 => {
            // Deep nesting, sometimes past the decoder's limit.
            let n = 1 + rng.below(140);
            (0..n).fold(json!(1), |inner, _| {
                if rng.chance(50) {
                    json!([inner])
                } else {
                    json!({ "a": inner })
                }
            })
        }
        _ => {
            // Many elements: comprehensions of the policies then walk them all.
            let n = rng.below(2000);
            Value::Array(vec![
                json!({"name": "s", "type": "webhook", "auth": {"type": "none"}});
                n
            ])
        }
    }
}

/// JSON pointers of every node under `v`.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                let p = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                pointers(child, p, out);
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                pointers(child, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

fn mutate_json(rng: &mut Rng, review: &mut Value) {
    let mut all = Vec::new();
    pointers(review, String::new(), &mut all);
    let target = rng.pick(&all).clone();
    match rng.below(6) {
        0 | 1 => {
            if let Some(node) = review.pointer_mut(&target) {
                *node = random_value(rng, 4);
            }
        }
        2 => {
            // Delete a member or an element.
            let Some((parent, last)) = target.rsplit_once('/') else {
                return;
            };
            match review.pointer_mut(parent) {
                Some(Value::Object(m)) => {
                    let key = last.replace("~1", "/").replace("~0", "~");
                    m.remove(&key);
                }
                Some(Value::Array(a)) => {
                    if let Ok(i) = last.parse::<usize>()
                        && i < a.len()
                    {
                        a.remove(i);
                    }
                }
                _ => {}
            }
        }
        3 => {
            // A string somewhere becomes another string (often a CEL expression).
            let strings: Vec<&String> = all
                .iter()
                .filter(|p| review.pointer(p).is_some_and(Value::is_string))
                .collect();
            if !strings.is_empty() {
                let p = (*rng.pick(&strings)).clone();
                *review.pointer_mut(&p).unwrap() = json!(random_string(rng));
            }
        }
        4 => {
            // The request's own fields, which decide what is examined.
            let (at, value) = match rng.below(6) {
                0 => (
                    "/request/operation",
                    json!(rng.pick(&["CREATE", "UPDATE", "DELETE", "CONNECT", "create", ""])),
                ),
                1 => (
                    "/request/kind/kind",
                    json!(rng.pick(&["Ingestor", "IngestorPolicy", "Pod", "Observation"])),
                ),
                2 => ("/request/subResource", json!(rng.pick(&["status", ""]))),
                3 => (
                    "/request/namespace",
                    json!(rng.pick(&["open", "default", "", "nowhere"])),
                ),
                4 => ("/request/dryRun", random_value(rng, 1)),
                _ => (
                    "/request/oldObject",
                    review
                        .pointer("/request/object")
                        .cloned()
                        .unwrap_or_default(),
                ),
            };
            let (parent, key) = at.rsplit_once('/').unwrap();
            if let Some(Value::Object(m)) = review.pointer_mut(parent) {
                m.insert(key.to_owned(), value);
            }
        }
        _ => {
            // Copy one node over another (an object where a string was, a source list into
            // the metadata, ...).
            let from = rng.pick(&all).clone();
            if let Some(v) = review.pointer(&from).cloned()
                && let Some(node) = review.pointer_mut(&target)
            {
                *node = v;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The checks

/// What the webhook reads of a request, decoded the way it decodes it (other fields skipped
/// unparsed, so a deeply nested unknown field does not hide the uid).
#[derive(Deserialize)]
struct Sent {
    request: SentRequest,
}

#[derive(Deserialize)]
struct SentRequest {
    uid: String,
    #[serde(default)]
    object: Option<Value>,
}

#[derive(Default, Debug)]
struct Stats {
    inputs: usize,
    refused: usize,
    allowed: usize,
    denied: usize,
    patched: usize,
}

/// Runs one input through the webhook and checks the answer.
fn run_one(admission: &Admission, mode: Mode, input: &[u8], stats: &mut Stats, what: &str) {
    stats.inputs += 1;
    let result = catch_unwind(AssertUnwindSafe(|| admission.handle(mode, input)));
    let result = match result {
        Ok(r) => r,
        Err(panic) => {
            let file = std::env::temp_dir().join(format!(
                "zen-admission-fuzz-smoke-{}.json",
                std::process::id()
            ));
            std::fs::write(&file, input).unwrap();
            eprintln!(
                "PANIC on {what} ({mode:?}, {} bytes), input written to {}",
                input.len(),
                file.display()
            );
            std::panic::resume_unwind(panic);
        }
    };
    let answer = match result {
        Ok(answer) => answer,
        Err(e) => {
            stats.refused += 1;
            assert!(!e.to_string().is_empty());
            if let ReviewError::Version(api_version, kind) = &e {
                assert!(
                    api_version != "admission.k8s.io/v1" || kind != "AdmissionReview",
                    "{what}: refused a v1 review as the wrong version"
                );
            }
            return;
        }
    };
    let review: Value = serde_json::from_slice(&answer)
        .unwrap_or_else(|e| panic!("{what}: answer is not JSON ({e})"));
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1", "{what}");
    assert_eq!(review["kind"], "AdmissionReview", "{what}");
    let response = &review["response"];
    let sent: Sent = serde_json::from_slice(input)
        .unwrap_or_else(|e| panic!("{what}: answered an input without a uid ({e})"));
    assert_eq!(
        response["uid"].as_str(),
        Some(sent.request.uid.as_str()),
        "{what}: uid echoed"
    );
    let allowed = response["allowed"]
        .as_bool()
        .unwrap_or_else(|| panic!("{what}: no response.allowed in {response}"));
    if allowed {
        stats.allowed += 1;
        assert!(response.get("status").is_none(), "{what}: {response}");
    } else {
        stats.denied += 1;
        let code = response["status"]["code"]
            .as_u64()
            .unwrap_or_else(|| panic!("{what}: a denial without a code: {response}"));
        assert!((400..600).contains(&code), "{what}: code {code}");
        assert!(response["status"]["reason"].is_string(), "{what}");
        assert!(response["status"]["message"].is_string(), "{what}");
        assert!(
            response.get("patch").is_none(),
            "{what}: denied with a patch"
        );
    }
    let Some(patch) = response.get("patch") else {
        return;
    };
    stats.patched += 1;
    assert_eq!(mode, Mode::Mutate, "{what}: the validating webhook patched");
    assert_eq!(response["patchType"], "JSONPatch", "{what}");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(patch.as_str().expect("patch is a string"))
        .unwrap_or_else(|e| panic!("{what}: patch is not base64 ({e})"));
    let ops: json_patch::Patch = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "{what}: patch is not JSON patch ({e}): {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    assert!(!ops.0.is_empty(), "{what}: an empty patch is left out");
    let mut object = sent
        .request
        .object
        .expect("a patched request has an object");
    json_patch::patch(&mut object, &ops).unwrap_or_else(|e| {
        panic!(
            "{what}: the patch does not apply to the object ({e}): {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    // Defaults are only written where nothing is: once applied, there is nothing left to do.
    let Ok(mut again) = serde_json::from_slice::<Value>(input) else {
        // Nested past serde_json's limit in a field the webhook skips.
        return;
    };
    again["request"]["object"] = object;
    let second = admission
        .handle(Mode::Mutate, &serde_json::to_vec(&again).unwrap())
        .unwrap_or_else(|e| panic!("{what}: the patched review is refused: {e}"));
    let second: Value = serde_json::from_slice(&second).unwrap();
    assert!(
        second["response"].get("patch").is_none(),
        "{what}: mutating the patched object patches again: {}",
        second["response"]
    );
}

fn check_seeds(admission: &Admission, seeds: &[Seed]) {
    let mut stats = Stats::default();
    for s in seeds {
        assert!(
            admission.handle(s.mode, &s.body).is_ok(),
            "seed {} refused",
            s.name
        );
        run_one(admission, s.mode, &s.body, &mut stats, &s.name);
    }
    assert!(stats.patched > 0 && stats.denied > 0, "{stats:?}");
}

/// One fuzzing run over `iterations` inputs; returns what the webhook did with them.
fn fuzz(seed: u64, iterations: u64, mutate: fn(&mut Rng, &Seed) -> Vec<u8>) -> Stats {
    let admission = admission();
    if let Ok(file) = std::env::var("ZEN_FUZZ_REPLAY") {
        // An input a run saved, first.
        let input = std::fs::read(&file).unwrap();
        for mode in [Mode::Validate, Mode::Mutate] {
            run_one(&admission, mode, &input, &mut Stats::default(), &file);
        }
    }
    let seeds = seeds();
    check_seeds(&admission, &seeds);
    let mut rng = Rng::new(seed);
    let mut stats = Stats::default();
    for i in 0..iterations {
        let s = rng.pick(&seeds).clone();
        let mode = if rng.chance(20) {
            match s.mode {
                Mode::Mutate => Mode::Validate,
                Mode::Validate => Mode::Mutate,
            }
        } else {
            s.mode
        };
        let input = mutate(&mut rng, &s);
        let what = format!("iteration {i} of seed {seed} from {}", s.name);
        run_one(&admission, mode, &input, &mut stats, &what);
    }
    eprintln!("seed {seed}: {stats:?}");
    stats
}

fn byte_mutations(rng: &mut Rng, seed: &Seed) -> Vec<u8> {
    let mut input = seed.body.clone();
    for _ in 0..1 + rng.below(3) {
        mutate_bytes(rng, &mut input);
    }
    input
}

fn json_mutations(rng: &mut Rng, seed: &Seed) -> Vec<u8> {
    let mut review: Value = serde_json::from_slice(&seed.body).unwrap();
    for _ in 0..1 + rng.below(4) {
        mutate_json(rng, &mut review);
    }
    let mut input = serde_json::to_vec(&review).unwrap();
    // Now and then a byte edit on top.
    if rng.chance(10) {
        mutate_bytes(rng, &mut input);
    }
    input
}

#[test]
fn byte_mutated_reviews_are_answered_or_refused_cleanly() {
    let seed = env_u64("ZEN_FUZZ_SEED", 0x5eed_0001);
    let stats = fuzz(seed, env_u64("ZEN_FUZZ_ITERATIONS", 1500), byte_mutations);
    // The run reached the policies, not only the decoder.
    assert!(stats.refused > 0, "{stats:?}");
    assert!(
        stats.allowed + stats.denied >= stats.inputs / 8,
        "{stats:?}"
    );
    assert!(stats.denied > 0 && stats.patched > 0, "{stats:?}");
}

#[test]
fn json_mutated_reviews_are_answered_or_refused_cleanly() {
    let seed = env_u64("ZEN_FUZZ_SEED", 0x5eed_0002);
    let stats = fuzz(seed, env_u64("ZEN_FUZZ_ITERATIONS", 1500), json_mutations);
    assert!(
        stats.allowed + stats.denied >= stats.inputs / 2,
        "{stats:?}"
    );
    assert!(stats.denied > 0 && stats.patched > 0, "{stats:?}");
}

#[test]
fn oversized_and_deeply_nested_bodies_are_refused() {
    let admission = admission();
    let huge = vec![b' '; zen_admission::review::MAX_REVIEW_BYTES + 1];
    assert!(matches!(
        admission.handle(Mode::Validate, &huge),
        Err(ReviewError::TooLarge)
    ));
    for body in [
        "[".repeat(100_000),
        "{\"a\":".repeat(100_000),
        format!(
            r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{{"uid":"u","kind":{{"group":"config.zen.watcher.io","version":"v1alpha1","kind":"Ingestor"}},"resource":{{"group":"config.zen.watcher.io","version":"v1alpha1","resource":"ingestors"}},"operation":"CREATE","object":{}1{}}}}}"#,
            "[".repeat(10_000),
            "]".repeat(10_000)
        ),
    ] {
        for mode in [Mode::Validate, Mode::Mutate] {
            assert!(matches!(
                admission.handle(mode, body.as_bytes()),
                Err(ReviewError::Decode(_))
            ));
        }
    }
    // Deep nesting in a field the webhook does not read is skipped, not recursed into.
    let body = format!(
        r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","x":{}{},"request":{{"uid":"u1","kind":{{"group":"","version":"v1","kind":"Pod"}},"resource":{{"group":"","version":"v1","resource":"pods"}},"operation":"CREATE"}}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let mut stats = Stats::default();
    run_one(
        &admission,
        Mode::Validate,
        body.as_bytes(),
        &mut stats,
        "deep unknown field",
    );
    assert_eq!(stats.allowed, 1);
}
