//! End-to-end benchmark of the admission webhook (`cargo bench --bench admission`).
//!
//! Runs the real `zen-watcher dev` binary with 20 generated IngestorPolicies in its
//! `--config-dir` (50 CEL expressions: 20 match conditions, 20 validations, 5 message
//! expressions, 5 mutations; some with a namespaceSelector) and, in a process of its own, a
//! baseline (`echo/`): a TLS server with the same certificates and client authentication
//! that answers every review with the exact bytes zen-watcher answered it with. Both are
//! measured in the same run with the same clients (hyper HTTP/1.1 keep-alive over rustls) and
//! the report gives ratios, because these machines are noisy.
//!
//! Measured for `POST /admission/validate` and `POST /admission/mutate` of a CREATE of a
//! valid Ingestor that every policy allows (the mutating webhook answers with a patch):
//!
//! - reviews/s from many keep-alive connections;
//! - latency of sequential reviews on one keep-alive connection, as the client sees it;
//! - server-side latency from the binary's own `zen_watcher_admission_duration_seconds`
//!   histogram (decode, checks, policies, encode; not TLS or HTTP), over the throughput run;
//! - `Admission::handle` in this process with the same policies (no TLS, HTTP or other load).
//!
//! Results go to stdout as a Markdown table.

mod echo;
#[path = "../tests/support/mod.rs"]
mod support;

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use echo::{Echo, EchoSpec, cpu_time};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use support::{DevServer, client::Client};
use zen_admission::{Admission, Mode, StaticCluster};

/// The server's allocator, so that the in-process figures are the server's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CONNECTIONS: usize = 32;
const SECONDS: u64 = 5;
/// Alternating measurements of the baseline and zen-watcher, per webhook.
const ROUNDS: usize = 3;
const SEQUENTIAL: usize = 5000;
const IN_PROCESS: usize = 20_000;
/// Reviews of a `ZEN_BENCH_HANDLE_ONLY` run.
const HANDLE_ONLY: usize = 2000;
const POLICIES: usize = 20;

const RECORDED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/testdata/kube-apiserver-1.28/admission/validate-create-alice.json"
);

const MATCH_CONDITIONS: [&str; 4] = [
    "request.operation in ['CREATE', 'UPDATE']",
    "object.spec.sources.exists(s, s.type == 'webhook')",
    "object.metadata.namespace != 'kube-system'",
    "has(object.spec.sources) && size(object.spec.sources) > 0",
];

const RULES: [&str; 20] = [
    "object.spec.sources.all(s, !has(s.rateLimit) || s.rateLimit.requestsPerSecond <= 1000)",
    "!has(object.spec.ttl) || !has(object.spec.ttl.max) || duration(object.spec.ttl.max) <= duration('720h')",
    "object.spec.sources.all(s, s.type != 'webhook' || s.auth.type != 'none')",
    "size(object.spec.sources) <= 16",
    "object.spec.sources.all(s, s.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'))",
    "!has(object.spec.filter) || size(object.spec.filter) <= 4096",
    "has(object.spec.mapping) && has(object.spec.mapping.severity)",
    "object.metadata.name.size() <= 63",
    "!has(object.metadata.labels) || object.metadata.labels.all(k, k.size() <= 63)",
    "object.spec.sources.all(s, s.type != 'webhook' || !has(s.maxBodyBytes) || s.maxBodyBytes <= 10485760)",
    "!has(object.spec.dedup) || !has(object.spec.dedup.window) || duration(object.spec.dedup.window) <= duration('24h')",
    "object.spec.sources.map(s, s.name).all(n, object.spec.sources.exists_one(t, t.name == n))",
    "request.userInfo.username != 'system:anonymous'",
    "object.spec.sources.all(s, s.type != 'webhook' || s.auth.type != 'hmac' || has(s.auth.secretRef))",
    "!has(object.spec.mapping.details) || size(object.spec.mapping.details) <= 2048",
    "object.spec.sources.exists(s, s.type == 'webhook' || s.type == 'kubernetesEvents')",
    "request.operation != 'UPDATE' || object.metadata.name == oldObject.metadata.name",
    "!has(object.spec.ttl) || !has(object.spec.ttl.default) || !has(object.spec.ttl.max) || duration(object.spec.ttl.default) <= duration(object.spec.ttl.max)",
    "object.spec.sources.all(s, !has(s.rateLimit) || !has(s.rateLimit.burst) || s.rateLimit.burst >= s.rateLimit.requestsPerSecond)",
    "!has(object.metadata.labels) || !('zen.watcher.io/frozen' in object.metadata.labels)",
];

const MUTATIONS: [(&str, &str); 5] = [
    ("/spec/dedup/window", "'5m'"),
    ("/spec/ttl/max", "'720h'"),
    (
        "/spec/ttl/default",
        "has(object.spec.ttl) && has(object.spec.ttl.max) && duration(object.spec.ttl.max) < duration('168h') ? object.spec.ttl.max : '168h'",
    ),
    (
        "/spec/sources/*/maxBodyBytes",
        "self.type == 'webhook' ? 1048576 : null",
    ),
    (
        "/spec/sources/*/rateLimit",
        "self.type == 'webhook' ? {'requestsPerSecond': 50, 'burst': 100} : null",
    ),
];

/// The 20 policies (50 expressions), a Namespace with the labels some of them select, and
/// the Secret the Ingestor names. Policy `i` denies an Ingestor named `bench-deny-{i}`, so
/// the benchmark can check that every one of them was loaded.
fn config_yaml() -> (String, usize) {
    let mut out = String::from(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: bench\n  labels:\n    team: bench\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata:\n  name: github-webhook\n  namespace: bench\n\
         stringData:\n  secret: bench-secret\n",
    );
    let mut expressions = 0;
    for i in 0..POLICIES {
        let _ = write!(
            out,
            "---\napiVersion: config.zen.watcher.io/v1alpha1\nkind: IngestorPolicy\n\
             metadata:\n  name: bench-{i:02}\nspec:\n"
        );
        if i % 4 == 0 {
            out.push_str("  namespaceSelector:\n    matchLabels:\n      team: bench\n");
        }
        let _ = write!(
            out,
            "  matchConditions:\n  - name: m{i}\n    expression: {:?}\n",
            MATCH_CONDITIONS[i % MATCH_CONDITIONS.len()]
        );
        let rule = format!("object.metadata.name != 'bench-deny-{i}' && ({})", RULES[i]);
        let _ = write!(
            out,
            "  validations:\n  - expression: {rule:?}\n    message: bench rule {i} failed\n"
        );
        expressions += 2;
        if i < 5 {
            let _ = writeln!(
                out,
                "    messageExpression: {:?}",
                format!(
                    "'Ingestor ' + object.metadata.name + ' in ' + request.namespace + ' breaks bench rule {i}'"
                )
            );
            expressions += 1;
        }
        if (5..10).contains(&i) {
            let (path, value) = MUTATIONS[i - 5];
            let _ = write!(
                out,
                "  mutations:\n  - path: {path:?}\n    valueExpression: {value:?}\n"
            );
            expressions += 1;
        }
        out.push_str("  validationActions: [Deny]\n  failurePolicy: Fail\n");
    }
    (out, expressions)
}

/// A valid Ingestor every policy allows; it leaves out what the mutations default.
fn ingestor(name: &str) -> Value {
    json!({
        "apiVersion": "config.zen.watcher.io/v1alpha1",
        "kind": "Ingestor",
        "metadata": {"name": name, "namespace": "bench", "labels": {"app.kubernetes.io/part-of": "zen-watcher"}},
        "spec": {
            "sources": [{
                "name": "github",
                "type": "webhook",
                "auth": {
                    "type": "hmac",
                    "secretRef": {"name": "github-webhook", "key": "secret"},
                    "hmac": {"preset": "github"},
                    "replay": {"deliveryIdHeader": "X-GitHub-Delivery", "window": "10m"}
                }
            }],
            "filter": "headers['x-github-event'] in ['code_scanning_alert', 'dependabot_alert', 'secret_scanning_alert'] && payload.action in ['created', 'reopened']",
            "mapping": {
                "source": "'github'",
                "category": "'security'",
                "severity": "headers['x-github-event'] == 'dependabot_alert' ? payload.alert.security_advisory.severity : 'high'",
                "eventType": "headers['x-github-event'] == 'dependabot_alert' ? 'vulnerable_dependency' : 'secret_leak'",
                "title": "payload.alert.security_advisory.summary",
                "details": "{'repository': payload.repository.full_name, 'alert': payload.alert.number}",
                "fingerprint": "payload.repository.full_name + '#' + string(payload.alert.number)"
            }
        }
    })
}

/// The review kube-apiserver 1.28 sent (the recording's exact envelope) around `object`.
fn review(object: &Value) -> Bytes {
    review_of(object, None)
}

/// As [`review`], or an UPDATE of `old` to `object` where `old` is given.
fn review_of(object: &Value, old: Option<&Value>) -> Bytes {
    let capture: Value =
        serde_json::from_str(&std::fs::read_to_string(RECORDED).expect("recording"))
            .expect("recording JSON");
    let mut review: Value =
        serde_json::from_str(capture["request"]["bodyRaw"].as_str().expect("bodyRaw"))
            .expect("review JSON");
    review["request"]["object"] = object.clone();
    review["request"]["name"] = object["metadata"]["name"].clone();
    review["request"]["namespace"] = object["metadata"]["namespace"].clone();
    if let Some(old) = old {
        review["request"]["operation"] = json!("UPDATE");
        review["request"]["oldObject"] = old.clone();
        review["request"]["options"]["kind"] = json!("UpdateOptions");
    }
    Bytes::from(review.to_string())
}

fn request(path: &str, body: Bytes) -> http::Request<Full<Bytes>> {
    http::Request::post(path)
        .header("host", "localhost")
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .body(Full::new(body))
        .expect("request")
}

async fn post(client: &Client, path: &str, body: Bytes) -> (u16, Bytes) {
    let mut sender = client.connect().await;
    let resp = sender
        .send_request(request(path, body))
        .await
        .expect("response");
    let status = resp.status().as_u16();
    (
        status,
        resp.into_body().collect().await.expect("body").to_bytes(),
    )
}

struct Load {
    per_second: f64,
    p50: Duration,
    p99: Duration,
    /// CPU time per review of the server process and of this one (the clients).
    server_cpu: Duration,
    client_cpu: Duration,
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Reviews from [`CONNECTIONS`] keep-alive connections for [`SECONDS`]; every answer must be
/// a 200 with the expected length (the same review always gets the same answer).
async fn load(
    client: &Client,
    server_pid: u32,
    path: &'static str,
    body: Bytes,
    answer_len: usize,
) -> Load {
    let cpu_before = (cpu_time(server_pid), cpu_time(std::process::id()));
    let deadline = Instant::now() + Duration::from_secs(SECONDS);
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let failed = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let mut sender = client.connect().await;
        let (body, latencies, failed) = (body.clone(), latencies.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            while Instant::now() < deadline {
                if sender.ready().await.is_err() {
                    break;
                }
                let start = Instant::now();
                let resp = sender
                    .send_request(request(path, body.clone()))
                    .await
                    .expect("response");
                let ok = resp.status() == http::StatusCode::OK;
                let got = resp.into_body().collect().await.expect("body").to_bytes();
                mine.push(start.elapsed());
                if !ok || got.len() != answer_len {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
            latencies.lock().expect("latencies").extend(mine);
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "{path}: unexpected answers; the figures would be wrong"
    );
    let (server_cpu, client_cpu) = (
        cpu_time(server_pid).saturating_sub(cpu_before.0),
        cpu_time(std::process::id()).saturating_sub(cpu_before.1),
    );
    let mut all = std::mem::take(&mut *latencies.lock().expect("latencies"));
    all.sort();
    let n = u32::try_from(all.len().max(1)).unwrap_or(u32::MAX);
    Load {
        per_second: all.len() as f64 / SECONDS as f64,
        p50: pct(&all, 0.5),
        p99: pct(&all, 0.99),
        server_cpu: server_cpu / n,
        client_cpu: client_cpu / n,
    }
}

/// Latencies of `n` sequential reviews on one keep-alive connection.
async fn sequential(client: &Client, path: &str, body: Bytes, n: usize) -> Vec<Duration> {
    let mut sender = client.connect().await;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        sender.ready().await.expect("connection ready");
        let start = Instant::now();
        let resp = sender
            .send_request(request(path, body.clone()))
            .await
            .expect("response");
        assert_eq!(resp.status(), http::StatusCode::OK);
        let _ = resp.into_body().collect().await.expect("body");
        out.push(start.elapsed());
    }
    out.sort();
    out
}

/// Cumulative bucket counts (upper bound in seconds → count) of the server's admission
/// latency histogram for one webhook, read from its metrics port.
async fn histogram(metrics_port: u16, webhook: &str) -> Vec<(f64, u64)> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", metrics_port))
        .await
        .expect("metrics port");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .expect("HTTP");
    tokio::spawn(conn);
    let req = http::Request::get("/metrics")
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = sender.send_request(req).await.expect("metrics");
    let text = resp.into_body().collect().await.expect("body").to_bytes();
    let text = String::from_utf8_lossy(&text);
    let mut out: Vec<(f64, u64)> = text
        .lines()
        .filter(|l| l.starts_with("zen_watcher_admission_duration_seconds_bucket{"))
        .filter(|l| l.contains(&format!("webhook=\"{webhook}\"")) && l.contains("CREATE"))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            let count = l.rsplit(' ').next()?.parse().ok()?;
            Some((le, count))
        })
        .collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// Server-side figures between two histogram readings: interpolated p50 and p99, the share
/// answered within 1 ms, and how many reviews that was.
fn server_side(before: &[(f64, u64)], after: &[(f64, u64)]) -> (Duration, Duration, f64, u64) {
    let diff: Vec<(f64, u64)> = after
        .iter()
        .map(|(le, n)| {
            let was = before.iter().find(|(b, _)| b == le).map_or(0, |(_, n)| *n);
            (*le, n - was)
        })
        .collect();
    let total = diff.last().map_or(0, |(_, n)| *n);
    assert!(total > 0, "the server recorded no reviews");
    let quantile = |q: f64| {
        let target = q * total as f64;
        let mut prev = (0.0, 0u64);
        for &(le, n) in &diff {
            if n as f64 >= target {
                let upper = if le.is_finite() { le } else { prev.0 * 2.0 };
                let within = (target - prev.1 as f64) / (n - prev.1).max(1) as f64;
                return Duration::from_secs_f64(prev.0 + (upper - prev.0) * within);
            }
            prev = (le, n);
        }
        Duration::ZERO
    };
    let within_1ms = diff
        .iter()
        .find(|(le, _)| (*le - 0.001).abs() < 1e-12)
        .map_or(0, |(_, n)| *n);
    (
        quantile(0.5),
        quantile(0.99),
        within_1ms as f64 / total as f64,
        total,
    )
}

/// `Admission::handle` in this process: the same policies, the same review, no I/O.
fn in_process(config: &str, body: &[u8], mode: Mode) -> Vec<Duration> {
    let admission = local_admission(config);
    for _ in 0..1000 {
        admission.handle(mode, body).expect("answer");
    }
    let mut out = Vec::with_capacity(IN_PROCESS);
    for _ in 0..IN_PROCESS {
        let start = Instant::now();
        let answer = admission.handle(mode, body).expect("answer");
        out.push(start.elapsed());
        std::hint::black_box(answer);
    }
    out.sort();
    out
}

/// The benchmark's policies, Namespace and Secret in an `Admission` of this process.
fn local_admission(config: &str) -> Admission {
    let mut cluster = StaticCluster::default();
    cluster.insert_namespace(
        "bench".into(),
        BTreeMap::from([("team".into(), "bench".into())]),
    );
    cluster.insert_secret(
        "bench".into(),
        "github-webhook".into(),
        vec!["secret".into()],
    );
    let admission = Admission::new(Arc::new(cluster), None).expect("admission");
    let policies: Vec<_> = zen_crds::manifest::load_str(Path::new("bench.yaml"), config)
        .expect("policies")
        .into_iter()
        .filter_map(|o| match o {
            zen_crds::manifest::Object::IngestorPolicy(p) => Some(*p),
            _ => None,
        })
        .collect();
    assert_eq!(policies.len(), POLICIES);
    assert!(admission.set_policies(&policies).is_empty());
    admission
}

/// `ZEN_BENCH_HANDLE_ONLY=validate` (or `mutate`): [`HANDLE_ONLY`] reviews through
/// `Admission::handle` and nothing else, for counting instructions under callgrind, which
/// unlike time does not depend on what else the machine is doing (docs/BENCHMARKS.md). With
/// `ZEN_BENCH_UPDATE=1` the review is an UPDATE, its old object the Ingestor before a label
/// changed, as `kubectl apply` of a changed file sends it. With `ZEN_BENCH_EVICT=KiB`, that
/// much memory is written between reviews, as the server's TLS, HTTP and other connections
/// do, so each review meets caches as cold as in the server (the time printed is then the
/// reviews' alone).
fn handle_only(mode: Mode) {
    let (config, _) = config_yaml();
    let admission = local_admission(&config);
    let object = ingestor("github-security");
    let body = if std::env::var_os("ZEN_BENCH_UPDATE").is_some() {
        let mut old = object.clone();
        old["metadata"]["labels"]["tier"] = json!("old");
        review_of(&object, Some(&old))
    } else {
        review(&object)
    };
    let evict: usize = std::env::var("ZEN_BENCH_EVICT")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(0);
    let mut other = vec![0u8; evict * 1024];
    let mut took = Duration::ZERO;
    for i in 0..HANDLE_ONLY {
        for at in (0..other.len()).step_by(64) {
            other[at] = other[at].wrapping_add(i as u8);
        }
        std::hint::black_box(&mut other);
        let start = Instant::now();
        std::hint::black_box(admission.handle(mode, &body).expect("answer"));
        took += start.elapsed();
    }
    println!(
        "{HANDLE_ONLY} reviews through Admission::handle, {:.1} µs each",
        took.as_secs_f64() * 1e6 / HANDLE_ONLY as f64
    );
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

/// A table row of two figures a side (p50 / p99, say) in `unit`, with zen-watcher's over the
/// echo's to `digits` places.
fn pair_row(
    label: String,
    zen: [Duration; 2],
    echo: [Duration; 2],
    unit: fn(Duration) -> String,
    digits: usize,
) -> [String; 4] {
    let ratio = |i: usize| zen[i].as_secs_f64() / echo[i].as_secs_f64();
    [
        label,
        format!("{} / {}", unit(zen[0]), unit(zen[1])),
        format!("{} / {}", unit(echo[0]), unit(echo[1])),
        format!("{:.*} / {:.*}", digits, ratio(0), digits, ratio(1)),
    ]
}

fn main() {
    echo::serve_if_asked();
    // `cargo bench` passes --bench; nothing else to parse.
    match std::env::var("ZEN_BENCH_HANDLE_ONLY").as_deref() {
        Ok("validate") => return handle_only(Mode::Validate),
        Ok("mutate") => return handle_only(Mode::Mutate),
        Ok(other) => panic!("ZEN_BENCH_HANDLE_ONLY is validate or mutate, not {other:?}"),
        Err(_) => {}
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}

async fn run() {
    let (config, expressions) = config_yaml();
    assert_eq!(expressions, 50);
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let config_dir = dir.path().join("config");
    std::fs::create_dir_all(&config_dir).expect("config dir");
    std::fs::write(config_dir.join("bench.yaml"), &config).expect("config");
    let server = DevServer::start(
        &data,
        &["--config-dir", config_dir.to_str().expect("utf-8")],
    );
    let zen = Client::admin(&data, server.secure_port);
    let body = review(&ingestor("github-security"));

    // Every policy is loaded: policy i denies `bench-deny-{i}` (the policies load in the
    // background; wait for the first).
    let deadline = Instant::now() + Duration::from_secs(30);
    for i in 0..POLICIES {
        loop {
            let (status, answer) = post(
                &zen,
                "/admission/validate",
                review(&ingestor(&format!("bench-deny-{i}"))),
            )
            .await;
            assert_eq!(status, 200);
            let answer: Value = serde_json::from_slice(&answer).expect("JSON");
            let response = &answer["response"];
            if response["allowed"] == false {
                let message = response["status"]["message"].as_str().unwrap_or_default();
                let expected = if i < 5 {
                    format!("breaks bench rule {i}")
                } else {
                    format!("bench rule {i} failed")
                };
                assert!(message.contains(&expected), "policy {i}: {message}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "policy bench-{i:02} was not loaded:\n{}",
                support::tail(&server.logs(), 20)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // The measured review is allowed by both webhooks; the mutating one patches it with
    // all five mutations.
    let mut answers = BTreeMap::new();
    for (path, mode) in [
        ("/admission/validate", Mode::Validate),
        ("/admission/mutate", Mode::Mutate),
    ] {
        let (status, answer) = post(&zen, path, body.clone()).await;
        assert_eq!(status, 200);
        let v: Value = serde_json::from_slice(&answer).expect("JSON");
        assert_eq!(v["response"]["allowed"], true, "{path}: {v}");
        if mode == Mode::Mutate {
            use base64::Engine;
            let patch = base64::engine::general_purpose::STANDARD
                .decode(v["response"]["patch"].as_str().expect("a patch"))
                .expect("base64");
            let ops: Vec<Value> = serde_json::from_slice(&patch).expect("patch JSON");
            for (p, _) in MUTATIONS {
                let p = p.replace("/*/", "/0/");
                let prefix = p.rsplit_once('/').map_or("", |(a, _)| a).to_owned();
                assert!(
                    ops.iter().any(|o| {
                        let op = o["path"].as_str().unwrap_or_default();
                        op == p || op == prefix
                    }),
                    "mutation {p} missing from {ops:?}"
                );
            }
        }
        answers.insert(path.to_owned(), answer);
    }
    let texts = answers
        .iter()
        .map(|(path, answer)| {
            let text = String::from_utf8(answer.to_vec()).expect("a JSON answer");
            (path.clone(), text)
        })
        .collect();
    let echo_server = Echo::start(&EchoSpec::dev(&data, true, 200, texts));
    let echo = Client::admin_of(&data, echo_server.port);

    let mut rows: Vec<[String; 4]> = Vec::new();
    let mut verdicts = Vec::new();
    for (path, mode, name) in [
        ("/admission/validate", Mode::Validate, "validate"),
        ("/admission/mutate", Mode::Mutate, "mutate"),
    ] {
        let len = answers[path].len();
        // Warm both up, then measure the baseline and zen-watcher alternately, so that a
        // change in the machine's speed during the run moves both sides of a ratio; the
        // round with the median ratio is reported.
        let _ = sequential(&zen, path, body.clone(), 500).await;
        let _ = sequential(&echo, path, body.clone(), 500).await;
        let before = histogram(server.metrics_port, name).await;
        let mut rounds = Vec::new();
        for _ in 0..ROUNDS {
            let base = load(&echo, echo_server.pid(), path, body.clone(), len).await;
            let z = load(&zen, server.pid(), path, body.clone(), len).await;
            rounds.push((z, base));
        }
        let after = histogram(server.metrics_port, name).await;
        let (s50, s99, within, n) = server_side(&before, &after);
        rounds.sort_by(|a, b| {
            (a.0.per_second / a.1.per_second).total_cmp(&(b.0.per_second / b.1.per_second))
        });
        let all_ratios: Vec<String> = rounds
            .iter()
            .map(|(z, base)| format!("{:.2}", z.per_second / base.per_second))
            .collect();
        let (z, base) = rounds.swap_remove(ROUNDS / 2);
        let zl = sequential(&zen, path, body.clone(), SEQUENTIAL).await;
        let el = sequential(&echo, path, body.clone(), SEQUENTIAL).await;
        let body_vec = body.to_vec();
        let config_for = config.clone();
        let local = tokio::task::spawn_blocking(move || in_process(&config_for, &body_vec, mode))
            .await
            .expect("in process");

        let ratio = z.per_second / base.per_second;
        rows.push([
            format!(
                "{name}: reviews/s, {CONNECTIONS} keep-alive HTTPS connections (median of {ROUNDS} rounds of {SECONDS} s a side)"
            ),
            format!("{:.0} /s", z.per_second),
            format!("{:.0} /s", base.per_second),
            format!("{ratio:.2} (rounds: {})", all_ratios.join(", ")),
        ]);
        rows.push(pair_row(
            format!("{name}: client latency in that round, p50 / p99"),
            [z.p50, z.p99],
            [base.p50, base.p99],
            ms,
            1,
        ));
        rows.push(pair_row(
            format!("{name}: CPU time per review in that round, server process / clients"),
            [z.server_cpu, z.client_cpu],
            [base.server_cpu, base.client_cpu],
            us,
            2,
        ));
        rows.push([
            format!(
                "{name}: server-side time over all rounds ({n} reviews, server's histogram), p50 / p99"
            ),
            format!(
                "{} / {} ({:.1} % within 1 ms)",
                ms(s50),
                ms(s99),
                within * 100.0
            ),
            "—".into(),
            "—".into(),
        ]);
        rows.push(pair_row(
            format!("{name}: {SEQUENTIAL} sequential reviews on one connection, p50 / p99"),
            [pct(&zl, 0.5), pct(&zl, 0.99)],
            [pct(&el, 0.5), pct(&el, 0.99)],
            ms,
            1,
        ));
        rows.push([
            format!("{name}: `Admission::handle` in process, {IN_PROCESS} reviews, p50 / p99"),
            format!("{} / {}", ms(pct(&local, 0.5)), ms(pct(&local, 0.99))),
            "—".into(),
            "—".into(),
        ]);
        verdicts.push(format!(
            "{name}: throughput {ratio:.2} of the echo (target ≥ 0.5: {}); server-side p99 {} (target < 1 ms: {}); one-connection p99 {} ({})",
            if ratio >= 0.5 { "met" } else { "NOT met" },
            ms(s99),
            if s99 < Duration::from_millis(1) { "met" } else { "NOT met" },
            ms(pct(&zl, 0.99)),
            if pct(&zl, 0.99) < Duration::from_millis(1) { "under 1 ms" } else { "over 1 ms" },
        ));
    }

    println!(
        "Review: CREATE of a valid Ingestor ({} bytes) in the recorded kube-apiserver 1.28 envelope; \
         {POLICIES} IngestorPolicies, {expressions} CEL expressions; answers {} bytes (validate) and {} bytes (mutate, with a patch).\n",
        body.len(),
        answers["/admission/validate"].len(),
        answers["/admission/mutate"].len(),
    );
    println!("| measurement | zen-watcher | TLS echo of the same answer (same run) | ratio |");
    println!("|---|---|---|---|");
    for [a, b, c, d] in rows {
        println!("| {a} | {b} | {c} | {d} |");
    }
    println!();
    for v in verdicts {
        println!("- {v}");
    }
}
