//! A real etcd (Debian's `etcd-server`) on loopback for tests: its own data directory and
//! free ports, stopped when dropped. `scripts/test.sh` installs it.

#![allow(dead_code)]

use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

pub struct Etcd {
    child: Option<Child>,
    dir: tempfile::TempDir,
    pub client_port: u16,
    peer_port: u16,
    /// Serving certificate, key and client CA files: clients must present a certificate.
    tls: Option<[PathBuf; 3]>,
}

/// PEM files for an etcd that serves TLS and requires client certificates.
pub struct TlsFiles {
    pub ca_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The etcd binary: `ZEN_E2E_ETCD`, else `etcd` on the PATH.
pub fn binary() -> PathBuf {
    std::env::var_os("ZEN_E2E_ETCD")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("etcd"))
}

impl Etcd {
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// An etcd on https that requires client certificates of `files.ca_pem`.
    pub fn start_tls(files: &TlsFiles) -> Self {
        Self::start_with(Some(files))
    }

    fn start_with(tls: Option<&TlsFiles>) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let tls = tls.map(|f| {
            let write = |name: &str, text: &str| {
                let path = dir.path().join(name);
                std::fs::write(&path, text).expect("write PEM");
                path
            };
            [
                write("server.crt", &f.server_cert_pem),
                write("server.key", &f.server_key_pem),
                write("ca.crt", &f.ca_pem),
            ]
        });
        let mut etcd = Self {
            child: None,
            dir,
            client_port: free_port(),
            peer_port: free_port(),
            tls,
        };
        etcd.run();
        etcd
    }

    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    fn run(&mut self) {
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("etcd.log"))
            .expect("etcd log");
        let child = Command::new(binary())
            .args(["--name", "zen-test"])
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("zen-test={peer}")])
            .args(match &self.tls {
                Some([cert, key, ca]) => vec![
                    "--cert-file".into(),
                    cert.clone().into_os_string(),
                    "--key-file".into(),
                    key.clone().into_os_string(),
                    "--trusted-ca-file".into(),
                    ca.clone().into_os_string(),
                    "--client-cert-auth".into(),
                ],
                None => Vec::new(),
            })
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "starting {:?} failed ({e}): install Debian's etcd-server (scripts/test.sh does) or set ZEN_E2E_ETCD",
                    binary()
                )
            });
        self.child = Some(child);
        self.wait_healthy();
    }

    fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        if self.tls.is_some() {
            // Plain HTTP cannot ask a TLS etcd; its log says when it serves clients.
            while !self.log().contains("serving client requests on") {
                assert!(
                    Instant::now() < deadline,
                    "etcd did not start:\n{}",
                    self.log()
                );
                std::thread::sleep(Duration::from_millis(100));
            }
            return;
        }
        loop {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.client_port)) {
                use std::io::{Read, Write};
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let _ = s.write_all(b"GET /health HTTP/1.0\r\n\r\n");
                let mut answer = String::new();
                let _ = s.read_to_string(&mut answer);
                if answer.contains("\"health\":\"true\"") {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "etcd did not become healthy:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default()
    }

    /// Kills etcd (as a crash would), keeping its data.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same ports and data.
    pub fn restart(&mut self) {
        self.kill();
        self.run();
    }

    /// Compacts etcd's history up to its current revision (what kube-apiserver does every
    /// five minutes).
    pub fn compact(&self) -> u64 {
        let answer = self.post("/v3/kv/range", r#"{"key":"AA=="}"#);
        let rev: u64 = answer["header"]["revision"]
            .as_str()
            .and_then(|r| r.parse().ok())
            .expect("revision");
        self.post(
            "/v3/kv/compaction",
            &format!(r#"{{"revision":"{rev}","physical":true}}"#),
        );
        rev
    }

    fn post(&self, path: &str, body: &str) -> serde_json::Value {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.client_port)).expect("etcd");
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        write!(
            s,
            "POST {path} HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .expect("write");
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        let json = answer.split("\r\n\r\n").nth(1).unwrap_or("null");
        serde_json::from_str(json).unwrap_or(serde_json::Value::Null)
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}
