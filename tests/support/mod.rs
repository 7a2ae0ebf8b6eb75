//! Runs the real `zen-watcher dev` binary and the real `kubectl` against it.

#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader},
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

/// A free loopback port. The listener is dropped before the server binds it; the window is
/// small enough for tests on one machine.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

pub mod delivery;
#[path = "../../store/tests/etcd_server/mod.rs"]
pub mod etcd_server;

/// A running `zen-watcher dev`, killed on drop. With `ZEN_TEST_STORE=etcd` it runs on its
/// own real etcd instead of the embedded store, so one suite covers both stores.
pub struct DevServer {
    child: Option<Child>,
    pub etcd: Option<etcd_server::Etcd>,
    pub data_dir: PathBuf,
    pub secure_port: u16,
    pub ingest_port: u16,
    pub metrics_port: u16,
    pub log: PathBuf,
}

impl DevServer {
    /// Starts the server on fresh ports with `data_dir` and waits until it answers.
    pub fn start(data_dir: &Path, extra: &[&str]) -> DevServer {
        let etcd = (std::env::var("ZEN_TEST_STORE").as_deref() == Ok("etcd"))
            .then(etcd_server::Etcd::start);
        let mut server = DevServer {
            child: None,
            etcd,
            data_dir: data_dir.to_owned(),
            secure_port: free_port(),
            ingest_port: free_port(),
            metrics_port: free_port(),
            log: data_dir.with_extension("log"),
        };
        server.spawn(extra);
        server
    }

    fn spawn(&mut self, extra: &[&str]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open server log");
        let child = Command::new(env!("CARGO_BIN_EXE_zen-watcher"))
            .arg("dev")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--secure-port", &self.secure_port.to_string()])
            .args(["--ingest-port", &self.ingest_port.to_string()])
            .args(["--metrics-port", &self.metrics_port.to_string()])
            .args(
                self.etcd
                    .as_ref()
                    .map(|e| vec!["--store".to_owned(), format!("etcd:{}", e.endpoint())])
                    .unwrap_or_default(),
            )
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .expect("start zen-watcher dev");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("zen-watcher dev exited with {status}:\n{}", self.logs());
            }
            if self.kubeconfig().exists() {
                let out = self.kubectl(&["get", "--raw", "/readyz"]);
                if out.status.success() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "zen-watcher dev not ready in 60 s:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops the server the hard way (SIGKILL) and starts it again on the same ports and data.
    pub fn kill_and_restart(&mut self, extra: &[&str]) {
        self.kill();
        self.spawn(extra);
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The server's process id (for resource measurements).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.data_dir.join("kubeconfig")
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs kubectl with the server's kubeconfig.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        kubectl_with(&self.kubeconfig(), args, None)
    }

    /// Runs kubectl and returns stdout, failing the test with everything printed otherwise.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {} failed ({}):\nstdout: {}\nstderr: {}\nserver log (tail):\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            tail(&self.logs(), 40),
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `kubectl apply -f -` of `yaml`, which must succeed; returns what kubectl printed.
    pub fn kubectl_apply(&self, yaml: &str) -> String {
        let out = self.kubectl_stdin(&["apply", "-f", "-"], yaml);
        assert!(
            out.status.success(),
            "kubectl apply failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Runs kubectl with `stdin` as input (for `apply -f -`).
    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> Output {
        kubectl_with(&self.kubeconfig(), args, Some(stdin))
    }

    /// Starts a long-running kubectl (a watch); its stdout is read line by line.
    pub fn kubectl_spawn(&self, args: &[&str]) -> (Child, std::sync::mpsc::Receiver<String>) {
        let mut child = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start kubectl");
        let stdout = child.stdout.take().expect("kubectl stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        (child, rx)
    }
}

impl Drop for DevServer {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn kubectl_with(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write;
    let mut cmd = Command::new("kubectl");
    cmd.arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    let mut child = cmd.spawn().expect("kubectl on PATH");
    if let Some(input) = stdin
        && let Some(mut pipe) = child.stdin.take()
    {
        pipe.write_all(input.as_bytes())
            .expect("write kubectl stdin");
    }
    child.wait_with_output().expect("kubectl output")
}

pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Waits for a line matching `pred` on a spawned kubectl's output.
pub fn expect_line(
    rx: &std::sync::mpsc::Receiver<String>,
    what: &str,
    pred: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            if pred(&line) {
                return line;
            }
            seen.push(line);
        }
    }
    panic!("no line with {what} in 20 s; saw:\n{}", seen.join("\n"));
}

/// A raw HTTPS client with the dev admin certificate, for what kubectl cannot send
/// (Accept and Content-Type headers, watch streams read line by line).
pub mod client {
    use std::{path::Path, sync::Arc, time::Duration};

    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper_util::rt::TokioIo;
    use rustls::pki_types::ServerName;
    use tokio::net::TcpStream;

    pub struct Client {
        config: Arc<rustls::ClientConfig>,
        port: u16,
    }

    pub struct Reply {
        pub status: u16,
        pub headers: http::HeaderMap,
        pub body: Bytes,
    }

    impl Reply {
        pub fn json(&self) -> serde_json::Value {
            serde_json::from_slice(&self.body).unwrap_or_else(|e| {
                panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body))
            })
        }
    }

    fn pem_certs(path: &Path) -> Vec<rustls::pki_types::CertificateDer<'static>> {
        let pem = std::fs::read(path).expect("read certificate");
        rustls_pemfile::certs(&mut pem.as_slice())
            .map(|c| c.expect("PEM certificate"))
            .collect()
    }

    impl Client {
        /// A client of the dev server under `data_dir`, as the admin.
        pub fn admin(data_dir: &Path, port: u16) -> Self {
            Self::admin_of(data_dir, port)
        }

        /// A client with the dev admin certificate for any server on `port` that trusts it.
        pub fn admin_of(data_dir: &Path, port: u16) -> Self {
            let pki = data_dir.join("pki");
            let cert = std::fs::read_to_string(pki.join("admin.crt")).expect("admin certificate");
            let key = std::fs::read_to_string(pki.join("admin.key")).expect("admin key");
            Self::with_certificate(data_dir, port, &cert, &key)
        }

        /// A client of the dev server under `data_dir` presenting the given certificate.
        pub fn with_certificate(data_dir: &Path, port: u16, cert_pem: &str, key_pem: &str) -> Self {
            let mut roots = rustls::RootCertStore::empty();
            for c in pem_certs(&data_dir.join("pki/ca.crt")) {
                roots.add(c).expect("CA");
            }
            let key = rustls_pemfile::private_key(&mut key_pem.as_bytes())
                .expect("PEM")
                .expect("a key");
            let certs = rustls_pemfile::certs(&mut cert_pem.as_bytes())
                .map(|c| c.expect("PEM certificate"))
                .collect();
            let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)
            .expect("client certificate");
            Self {
                config: Arc::new(config),
                port,
            }
        }

        /// A new keep-alive HTTP/1.1 connection.
        pub async fn connect(&self) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
            let tcp = TcpStream::connect(("127.0.0.1", self.port))
                .await
                .expect("connect");
            tcp.set_nodelay(true).ok();
            let tls = tokio_rustls::TlsConnector::from(self.config.clone())
                .connect(ServerName::try_from("localhost").expect("name"), tcp)
                .await
                .expect("TLS handshake");
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .expect("HTTP handshake");
            tokio::spawn(conn);
            sender
        }

        fn request(
            method: &str,
            path: &str,
            headers: &[(&str, &str)],
            body: &str,
        ) -> http::Request<Full<Bytes>> {
            let mut req = http::Request::builder()
                .method(method)
                .uri(path)
                .header("host", "localhost");
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            req.body(Full::new(Bytes::from(body.to_owned())))
                .expect("request")
        }

        /// One request, the whole answer.
        pub async fn send(
            &self,
            method: &str,
            path: &str,
            headers: &[(&str, &str)],
            body: &str,
        ) -> Reply {
            let mut sender = self.connect().await;
            let resp = sender
                .send_request(Self::request(method, path, headers, body))
                .await
                .expect("response");
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let body = resp.into_body().collect().await.expect("body").to_bytes();
            Reply {
                status,
                headers,
                body,
            }
        }

        /// A watch: returns a receiver of parsed events.
        pub async fn watch(
            &self,
            path: &str,
            headers: &[(&str, &str)],
        ) -> (u16, tokio::sync::mpsc::Receiver<serde_json::Value>) {
            let mut sender = self.connect().await;
            let resp = sender
                .send_request(Self::request("GET", path, headers, ""))
                .await
                .expect("response");
            let status = resp.status().as_u16();
            let (tx, rx) = tokio::sync::mpsc::channel(1024);
            let mut body = resp.into_body();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                while let Some(frame) = body.frame().await {
                    let Ok(frame) = frame else { break };
                    if let Some(data) = frame.data_ref() {
                        buf.extend_from_slice(data);
                        while let Some(i) = buf.iter().position(|b| *b == b'\n') {
                            let line: Vec<u8> = buf.drain(..=i).collect();
                            if let Ok(v) = serde_json::from_slice(&line)
                                && tx.send(v).await.is_err()
                            {
                                return;
                            }
                        }
                    }
                }
            });
            (status, rx)
        }
    }

    /// The next event of a watch, failing the test after 10 s.
    pub async fn next_event(
        rx: &mut tokio::sync::mpsc::Receiver<serde_json::Value>,
    ) -> serde_json::Value {
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("a watch event within 10 s")
            .expect("the watch is still open")
    }
}

/// One HTTPS request with any trust and client identity, errors returned (not panics): for
/// tests that expect refusals.
pub mod tls {
    use std::sync::Arc;

    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper_util::rt::TokioIo;
    use rustls::pki_types::{CertificateDer, ServerName};

    pub struct Answer {
        pub status: u16,
        pub headers: http::HeaderMap,
        pub body: serde_json::Value,
        /// The certificate chain the server presented.
        pub chain: Vec<CertificateDer<'static>>,
    }

    pub struct Request<'a> {
        pub port: u16,
        pub server_name: &'a str,
        /// PEM bundle of the CAs to trust.
        pub trust: &'a str,
        /// PEM certificate and key to present.
        pub client: Option<(&'a str, &'a str)>,
        pub method: &'a str,
        pub path: &'a str,
        pub headers: &'a [(&'a str, &'a str)],
        pub body: &'a [u8],
    }

    pub async fn send(r: Request<'_>) -> Result<Answer, String> {
        let e = |e: &dyn std::fmt::Display| e.to_string();
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pemfile::certs(&mut r.trust.as_bytes()) {
            roots.add(c.map_err(|x| e(&x))?).map_err(|x| e(&x))?;
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|x| e(&x))?
        .with_root_certificates(roots);
        let config = match r.client {
            Some((cert, key)) => {
                let certs = rustls_pemfile::certs(&mut cert.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|x| e(&x))?;
                let key = rustls_pemfile::private_key(&mut key.as_bytes())
                    .map_err(|x| e(&x))?
                    .ok_or("no key")?;
                builder
                    .with_client_auth_cert(certs, key)
                    .map_err(|x| e(&x))?
            }
            None => builder.with_no_client_auth(),
        };
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", r.port))
            .await
            .map_err(|x| format!("connect: {x}"))?;
        let name = ServerName::try_from(r.server_name.to_owned()).map_err(|x| e(&x))?;
        let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|x| format!("TLS: {x}"))?;
        let chain = stream
            .get_ref()
            .1
            .peer_certificates()
            .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
            .unwrap_or_default();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|x| format!("HTTP: {x}"))?;
        tokio::spawn(conn);
        let mut req = http::Request::builder()
            .method(r.method)
            .uri(r.path)
            .header("host", r.server_name);
        for (k, v) in r.headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(Bytes::copy_from_slice(r.body)))
            .map_err(|x| e(&x))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|x| format!("request: {x}"))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|x| format!("body: {x}"))?
            .to_bytes();
        Ok(Answer {
            status,
            headers,
            body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
            chain,
        })
    }
}

/// A recorded AdmissionReview (kube-apiserver 1.28, validate on create) with `object` in
/// place of the recorded one: the exact envelope kube-apiserver sends.
pub fn admission_review(object: &serde_json::Value) -> String {
    let capture: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/testdata/kube-apiserver-1.28/admission/validate-create-alice.json"
        ))
        .expect("recorded review"),
    )
    .expect("JSON");
    let mut review: serde_json::Value =
        serde_json::from_str(capture["request"]["bodyRaw"].as_str().expect("bodyRaw"))
            .expect("JSON");
    review["request"]["object"] = object.clone();
    review["request"]["name"] = object["metadata"]["name"].clone();
    review["request"]["namespace"] = object["metadata"]["namespace"].clone();
    review.to_string()
}
