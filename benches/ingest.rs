//! End-to-end benchmark of the ingest port (`cargo bench --bench ingest`).
//!
//! Runs the real `zen-watcher dev` binary with one GitHub-style Ingestor (HMAC-SHA256,
//! delivery-id replay cache, CEL filter and mapping, dedup, durable write) and, in a process
//! of its own, a baseline (`echo/`): a TLS server with the same certificate answering every
//! delivery with a fixed body. The same clients send the same signed deliveries to both in
//! the same run; the report gives throughput and latency side by side, and their ratios.

mod echo;
#[path = "../tests/support/mod.rs"]
mod support;

use std::{
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use echo::{Echo, EchoSpec};
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use sha2::Sha256;
use support::DevServer;

const SECRET: &str = "bench-secret";
const PATH: &str = "/hooks/bench/github/github";
const CONNECTIONS: usize = 32;
const SECONDS: u64 = 10;
/// Alternating measurements of the baseline and zen-watcher.
const ROUNDS: usize = 3;

const CONFIG: &str = r#"
apiVersion: v1
kind: Secret
metadata: {name: github, namespace: bench}
stringData: {secret: bench-secret}
---
apiVersion: config.zen.watcher.io/v1alpha1
kind: Ingestor
metadata: {name: github, namespace: bench}
spec:
  sources:
  - name: github
    type: webhook
    auth:
      type: hmac
      secretRef: {name: github, key: secret}
      hmac: {preset: github}
      # Ids are remembered (and expired) for 2 s: at bench rates a longer window would fill
      # the endpoint's bounded id cache (100,000; 5 s did above 20,000 deliveries/s), whose
      # refusals are not what is measured.
      replay: {window: 2s}
  filter: headers['x-github-event'] == 'dependabot_alert' && payload.action == 'created'
  mapping:
    source: "'github'"
    category: "'security'"
    severity: payload.alert.security_advisory.severity
    eventType: "'vulnerable_dependency'"
    title: payload.alert.security_advisory.summary
    details: "{'repository': payload.repository.full_name, 'alert': payload.alert.number}"
    fingerprint: payload.repository.full_name + '#' + string(payload.alert.number)
  dedup: {window: 5m}
"#;

fn delivery(i: u64) -> (Bytes, String) {
    let body = format!(
        r#"{{"action":"created","alert":{{"number":{i},"state":"open","html_url":"https://github.com/acme/shop/security/dependabot/{i}","security_advisory":{{"ghsa_id":"GHSA-xxxx-yyyy-{i}","summary":"Prototype pollution in lodash","severity":"high"}}}},"repository":{{"full_name":"acme/shop"}},"sender":{{"login":"dependabot[bot]"}}}}"#
    );
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(SECRET.as_bytes()).expect("key");
    mac.update(body.as_bytes());
    let sig: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    (Bytes::from(body), format!("sha256={sig}"))
}

fn client_config(data: &Path) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let ca = std::fs::read_to_string(data.join("pki/ca.crt")).expect("CA");
    for c in zen_certs::tls::certs_from_pem(&ca, "ca").expect("CA PEM") {
        roots.add(c).expect("root");
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(zen_certs::tls::provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(port: u16, tls: Arc<rustls::ClientConfig>) -> Sender {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    tcp.set_nodelay(true).ok();
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("TLS");
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP");
    tokio::spawn(conn);
    sender
}

struct Run {
    per_second: f64,
    p50: Duration,
    p99: Duration,
    /// Deliveries answered other than 201, and the first one's status and body.
    refused: Refused,
}

#[derive(Default)]
struct Refused {
    count: u64,
    first: String,
}

/// Signed deliveries from [`CONNECTIONS`] keep-alive connections for [`SECONDS`].
async fn load(port: u16, tls: Arc<rustls::ClientConfig>, counter: Arc<AtomicU64>) -> Run {
    let deadline = Instant::now() + Duration::from_secs(SECONDS);
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let refused = Arc::new(Mutex::new(Refused::default()));
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let mut sender = connect(port, tls.clone()).await;
        let (counter, latencies, refused) = (counter.clone(), latencies.clone(), refused.clone());
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            while Instant::now() < deadline {
                let i = counter.fetch_add(1, Ordering::Relaxed);
                let (body, sig) = delivery(i);
                let req = http::Request::post(PATH)
                    .header("host", "localhost")
                    .header("content-type", "application/json")
                    .header("x-github-event", "dependabot_alert")
                    .header("x-github-delivery", format!("bench-{i}"))
                    .header("x-hub-signature-256", sig)
                    .body(Full::new(body))
                    .expect("request");
                let start = Instant::now();
                if sender.ready().await.is_err() {
                    break;
                }
                let resp = sender.send_request(req).await.expect("response");
                let status = resp.status();
                let body = resp.into_body().collect().await;
                mine.push(start.elapsed());
                if status != http::StatusCode::CREATED {
                    let mut refused = refused.lock().expect("refusals");
                    refused.count += 1;
                    if refused.first.is_empty() {
                        let body = body.map(|b| b.to_bytes()).unwrap_or_default();
                        refused.first = format!("{status} {}", String::from_utf8_lossy(&body));
                    }
                }
            }
            latencies.lock().expect("latencies").extend(mine);
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let mut all = std::mem::take(&mut *latencies.lock().expect("latencies"));
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 - 1.0) * p).round() as usize];
    Run {
        per_second: all.len() as f64 / SECONDS as f64,
        p50: pct(0.50),
        p99: pct(0.99),
        refused: std::mem::take(&mut *refused.lock().expect("refusals")),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    echo::serve_if_asked();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}

async fn run() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let config = dir.path().join("config");
    std::fs::create_dir_all(&config).expect("config dir");
    std::fs::write(config.join("bench.yaml"), CONFIG).expect("config");
    // The port-wide limit (10,000/s by default) would cap what is measured: lifted.
    let server = DevServer::start(
        &data,
        &[
            "--config-dir",
            config.to_str().expect("utf-8"),
            "--ingest-rate-limit",
            "1000000",
        ],
    );
    let tls = client_config(&data);
    // Wait for the endpoint.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut sender = connect(server.ingest_port, tls.clone()).await;
        let req = http::Request::post(PATH)
            .header("host", "localhost")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(b"{}")))
            .expect("request");
        if sender.send_request(req).await.expect("response").status() != http::StatusCode::NOT_FOUND
        {
            break;
        }
        assert!(Instant::now() < deadline, "the endpoint never appeared");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let answer = r#"{"observation":"bench/github-0123456789abcdef","status":"created"}"#;
    let echo_server = Echo::start(&EchoSpec::dev(
        &data,
        false,
        201,
        [(String::new(), answer.to_owned())].into(),
    ));
    let echo = echo_server.port;
    let counter = Arc::new(AtomicU64::new(0));
    // Warm the baseline up, then measure it and zen-watcher alternately, so that a change in
    // the machine's speed during the run moves both sides of a ratio.
    let _ = load(echo, tls.clone(), counter.clone()).await;
    let mut rounds = Vec::new();
    for _ in 0..ROUNDS {
        let base = load(echo, tls.clone(), counter.clone()).await;
        let zen = load(server.ingest_port, tls.clone(), counter.clone()).await;
        assert!(
            zen.refused.count == 0,
            "{} deliveries were refused (the figures would be wrong), the first: {}",
            zen.refused.count,
            zen.refused.first
        );
        rounds.push((zen, base));
    }
    println!(
        "| round | deliveries/s zen-watcher | TLS echo | ratio | p50 zen-watcher | TLS echo | p99 zen-watcher | TLS echo |\n\
         |---|---|---|---|---|---|---|---|"
    );
    for (i, (zen, base)) in rounds.iter().enumerate() {
        println!(
            "| {} | {:.0} | {:.0} | {:.2} | {} | {} | {} | {} |",
            i + 1,
            zen.per_second,
            base.per_second,
            zen.per_second / base.per_second,
            ms(zen.p50),
            ms(base.p50),
            ms(zen.p99),
            ms(base.p99),
        );
    }
    let mut ratios: Vec<f64> = rounds
        .iter()
        .map(|(zen, base)| zen.per_second / base.per_second)
        .collect();
    ratios.sort_by(f64::total_cmp);
    let worst_p99 = rounds
        .iter()
        .map(|(zen, _)| zen.p99)
        .max()
        .unwrap_or_default();
    println!(
        "median ratio {:.2} ({CONNECTIONS} keep-alive connections, {SECONDS} s a side each round); worst p99 {}",
        ratios[ratios.len() / 2],
        ms(worst_p99)
    );
}
