//! The benchmarks' baseline: a TLS server that answers each path with fixed bytes, run as a
//! process of its own, as zen-watcher is. Served from the clients' own runtime, it would skip
//! what every cross-process request pays (a wakeup of another process's threads on each side)
//! and a ratio would count that against zen-watcher's code.
//!
//! The benchmark binary serves it itself: [`serve_if_asked`] at the top of `main` turns a
//! process started by [`Echo::start`] into the echo server.

use std::{
    collections::BTreeMap,
    convert::Infallible,
    io::{BufRead, BufReader, Read, Write},
    path::Path,
    process::{Child, Command, Stdio},
    sync::Arc,
};

use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};

/// Set for the echo process, which reads its [`EchoSpec`] as the first line of its stdin (an
/// answer may be megabytes, too long for the environment).
const ECHO_VAR: &str = "ZEN_BENCH_ECHO";

/// What the echo serves: the serving certificate and key, the CA client certificates must
/// chain to (none: no client authentication), a status, and an answer per path (`""` for
/// any other path).
#[derive(Serialize, Deserialize)]
pub struct EchoSpec {
    pub cert_pem: String,
    pub key_pem: String,
    pub client_ca_pem: Option<String>,
    pub status: u16,
    pub answers: BTreeMap<String, String>,
}

/// A running echo process, stopped on drop.
pub struct Echo {
    child: Child,
    pub port: u16,
}

impl Echo {
    pub fn start(spec: &EchoSpec) -> Self {
        let exe = std::env::current_exe().expect("benchmark executable");
        let mut child = Command::new(exe)
            .env(ECHO_VAR, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("echo process");
        let mut line = serde_json::to_vec(spec).expect("spec");
        line.push(b'\n');
        child
            .stdin
            .as_mut()
            .expect("echo stdin")
            .write_all(&line)
            .expect("echo spec");
        let stdout = child.stdout.take().expect("echo stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("echo port");
        let port = line.trim().parse().expect("echo port line");
        Self { child, port }
    }

    #[allow(dead_code)] // not every benchmark reads CPU time
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// In a process started by [`Echo::start`], serves the echo until the benchmark goes away;
/// elsewhere returns at once.
pub fn serve_if_asked() {
    if std::env::var_os(ECHO_VAR).is_none() {
        return;
    }
    let mut stdin = BufReader::new(std::io::stdin());
    let mut line = String::new();
    stdin.read_line(&mut line).expect("echo spec");
    let spec: EchoSpec = serde_json::from_str(&line).expect("echo spec");
    // The benchmark holds our stdin: when it ends, so do we.
    std::thread::spawn(move || {
        let _ = stdin.read_to_end(&mut Vec::new());
        std::process::exit(0);
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(serve(spec));
    std::process::exit(0);
}

async fn serve(spec: EchoSpec) {
    let config =
        match &spec.client_ca_pem {
            Some(ca) => zen_certs::tls::mutual_tls_server(&spec.cert_pem, &spec.key_pem, ca),
            None => zen_certs::tls::certified_key(&spec.cert_pem, &spec.key_pem, "echo").and_then(
                |key| zen_certs::tls::server_config(zen_certs::tls::ServingCert::new(key), None),
            ),
        }
        .expect("TLS config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    println!("{}", listener.local_addr().expect("addr").port());
    let status = http::StatusCode::from_u16(spec.status).expect("status");
    let answers: Arc<BTreeMap<String, bytes::Bytes>> = Arc::new(
        spec.answers
            .into_iter()
            .map(|(path, body)| (path, bytes::Bytes::from(body)))
            .collect(),
    );
    let service = tower::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let answers = answers.clone();
        async move {
            let answer = answers
                .get(req.uri().path())
                .or_else(|| answers.get(""))
                .cloned()
                .unwrap_or_default();
            let _ = req.into_body().collect().await;
            let mut resp = http::Response::new(zen_serving::full(answer));
            *resp.status_mut() = status;
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            Ok::<_, Infallible>(resp)
        }
    });
    zen_serving::serve_tls(
        listener,
        Arc::new(config),
        service,
        zen_serving::ServerOptions::default(),
        std::future::pending(),
    )
    .await;
}

impl EchoSpec {
    /// The dev server's serving certificate (under `data`), with client certificates
    /// verified against its CA when `client_auth`, answering `answers` with `status`.
    pub fn dev(
        data: &Path,
        client_auth: bool,
        status: u16,
        answers: BTreeMap<String, String>,
    ) -> Self {
        let read = |f: &str| {
            let path = data.join("pki").join(f);
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        };
        Self {
            cert_pem: read("tls.crt"),
            key_pem: read("tls.key"),
            client_ca_pem: client_auth.then(|| read("ca.crt")),
            status,
            answers,
        }
    }
}

/// CPU time (user and system) a process has used so far, from `/proc/{pid}/stat`; zero where
/// it cannot be read. Throughput on these two-core machines is bound by CPU shared between
/// clients and servers, so time per request says where a ratio's difference goes.
#[allow(dead_code)] // not every benchmark reads CPU time
pub fn cpu_time(pid: u32) -> std::time::Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces), in parentheses.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    // utime and stime are fields 14 and 15 of the line, in clock ticks of 1/100 s on Linux.
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<u64>().ok()))
        .sum();
    std::time::Duration::from_millis(ticks * 10)
}
