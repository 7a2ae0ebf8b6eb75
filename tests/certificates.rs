//! Certificates of `zen-watcher dev` rotate in process: no restart, no failed request, and
//! clients holding either CA bundle keep working through a CA rotation.

mod support;

use std::{
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use base64::{Engine, engine::general_purpose::STANDARD};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use support::DevServer;
use zen_certs::{inspect::CertInfo, issue::Ca};

/// What a client of the dev server holds: the CA bundle it trusts and its certificate.
#[derive(Clone)]
struct Credentials {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

impl Credentials {
    /// As the kubeconfig publishes them now.
    fn from_kubeconfig(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
        let config: serde_json::Value = serde_saphyr::from_str(&text).map_err(|e| e.to_string())?;
        let field = |v: &serde_json::Value| -> Result<String, String> {
            let b64 = v.as_str().ok_or("missing kubeconfig field")?;
            let bytes = STANDARD.decode(b64).map_err(|e| e.to_string())?;
            String::from_utf8(bytes).map_err(|e| e.to_string())
        };
        Ok(Self {
            ca_pem: field(&config["clusters"][0]["cluster"]["certificate-authority-data"])?,
            cert_pem: field(&config["users"][0]["user"]["client-certificate-data"])?,
            key_pem: field(&config["users"][0]["user"]["client-key-data"])?,
        })
    }

    fn with_ca(&self, ca_pem: &str) -> Self {
        Self {
            ca_pem: ca_pem.to_owned(),
            ..self.clone()
        }
    }

    fn tls(&self) -> Result<Arc<rustls::ClientConfig>, String> {
        let mut roots = rustls::RootCertStore::empty();
        for c in zen_certs::tls::certs_from_pem(&self.ca_pem, "ca").map_err(|e| e.to_string())? {
            roots.add(c).map_err(|e| e.to_string())?;
        }
        let certs =
            zen_certs::tls::certs_from_pem(&self.cert_pem, "cert").map_err(|e| e.to_string())?;
        let key = zen_certs::tls::key_from_pem(&self.key_pem, "key").map_err(|e| e.to_string())?;
        let config = rustls::ClientConfig::builder_with_provider(zen_certs::tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)
            .map_err(|e| e.to_string())?;
        Ok(Arc::new(config))
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// A verified TLS connection: the request sender and the chain the server presented.
async fn connect(
    port: u16,
    tls: Arc<rustls::ClientConfig>,
) -> Result<(Sender, Vec<CertificateDer<'static>>), String> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let name = ServerName::try_from("zen-watcher.zen-system.svc").map_err(|e| e.to_string())?;
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS: {e}"))?;
    let chain = stream
        .get_ref()
        .1
        .peer_certificates()
        .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
        .unwrap_or_default();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    tokio::spawn(conn);
    Ok((sender, chain))
}

async fn get(sender: &mut Sender, path: &str) -> Result<u16, String> {
    sender
        .ready()
        .await
        .map_err(|e| format!("connection: {e}"))?;
    let req = http::Request::get(path)
        .header("host", "zen-watcher.zen-system.svc")
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = resp.status().as_u16();
    resp.into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?;
    Ok(status)
}

/// One request on a new connection: the answer's status and the leaf the server showed.
async fn one_shot(port: u16, creds: &Credentials, path: &str) -> Result<(u16, String), String> {
    let (mut sender, chain) = connect(port, creds.tls()?).await?;
    let status = get(&mut sender, path).await?;
    let leaf = chain.first().ok_or("no server certificate")?;
    let serial = CertInfo::of_der(leaf.as_ref(), "leaf")
        .map_err(|e| e.to_string())?
        .serial;
    Ok((status, serial))
}

fn rotations(server: &DevServer, cert: &str) -> u64 {
    let body = std::process::Command::new("curl")
        .args([
            "-s",
            &format!("http://127.0.0.1:{}/metrics", server.metrics_port),
        ])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let prefix = format!("zen_watcher_cert_rotations_total{{cert=\"{cert}\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

const PATH: &str = "/apis/zen.watcher.io/v1alpha1";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serving_certificates_rotate_under_load_without_a_failed_request() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = DevServer::start(&data, &["--cert-validity", "20s"]);
    let port = server.secure_port;
    let kubeconfig = server.kubeconfig();

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let serials = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut tasks = Vec::new();

    // Keep-alive clients: one connection each for the whole run.
    for _ in 0..3 {
        let creds = Credentials::from_kubeconfig(&kubeconfig).unwrap();
        let (stop, ok, failures) = (stop.clone(), ok.clone(), failures.clone());
        tasks.push(tokio::spawn(async move {
            let (mut sender, _) = match connect(port, creds.tls().unwrap()).await {
                Ok(c) => c,
                Err(e) => return failures.lock().unwrap().push(format!("keep-alive: {e}")),
            };
            while !stop.load(Ordering::Relaxed) {
                match get(&mut sender, PATH).await {
                    Ok(200) => ok.fetch_add(1, Ordering::Relaxed),
                    Ok(s) => {
                        return failures
                            .lock()
                            .unwrap()
                            .push(format!("keep-alive: HTTP {s}"));
                    }
                    Err(e) => return failures.lock().unwrap().push(format!("keep-alive: {e}")),
                };
            }
        }));
    }
    // New connections, each verifying against the bundle the kubeconfig publishes now.
    for _ in 0..3 {
        let (stop, ok, failures, serials) =
            (stop.clone(), ok.clone(), failures.clone(), serials.clone());
        let kubeconfig = kubeconfig.clone();
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let result = match Credentials::from_kubeconfig(&kubeconfig) {
                    Ok(creds) => one_shot(port, &creds, PATH).await,
                    Err(e) => Err(format!("kubeconfig: {e}")),
                };
                match result {
                    Ok((200, serial)) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                        let mut s = serials.lock().unwrap();
                        if !s.contains(&serial) {
                            s.push(serial);
                        }
                    }
                    Ok((s, _)) => failures
                        .lock()
                        .unwrap()
                        .push(format!("new connection: HTTP {s}")),
                    Err(e) => failures
                        .lock()
                        .unwrap()
                        .push(format!("new connection: {e}")),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }

    // Three renewals of a 20-second certificate (each at two thirds of its life).
    let deadline = Instant::now() + Duration::from_secs(120);
    while rotations(&server, "serving") < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }

    let failures = failures.lock().unwrap();
    let serials = serials.lock().unwrap();
    assert!(
        rotations(&server, "serving") >= 3,
        "fewer than 3 rotations in 120 s:\n{}",
        support::tail(&server.logs(), 30)
    );
    assert!(
        serials.len() >= 4,
        "new connections saw only {} certificates: {serials:?}",
        serials.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} requests failed: {:?}",
        failures.len(),
        ok.load(Ordering::Relaxed) + failures.len() as u64,
        &failures[..failures.len().min(5)]
    );
    assert!(ok.load(Ordering::Relaxed) > 100);
    assert!(server.logs().contains("issued a serving certificate"));
}

/// Reads the CA Secret file of a dev data directory.
fn ca_secret(data: &Path) -> serde_json::Value {
    std::fs::read_to_string(data.join("pki/zen-watcher-ca.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_of_the_old_and_the_new_ca_bundle_both_get_in_during_the_overlap() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = DevServer::start(&data, &["--cert-validity", "8s", "--ca-validity", "24s"]);
    let port = server.secure_port;
    let old = Credentials::from_kubeconfig(&server.kubeconfig()).unwrap();
    let old_ca = ca_secret(&data)["ca.crt"].as_str().unwrap().to_owned();
    assert_eq!(one_shot(port, &old, PATH).await.unwrap().0, 200);

    // The CA rotates at two thirds of its life: the new CA signs, the old one stays trusted.
    wait_for("the new CA to sign", || {
        ca_secret(&data)["previous-ca.crt"].as_str() == Some(old_ca.as_str())
    })
    .await;
    let new_ca = ca_secret(&data)["ca.crt"].as_str().unwrap().to_owned();
    assert_ne!(new_ca, old_ca);
    let new = Credentials::from_kubeconfig(&server.kubeconfig()).unwrap();
    assert_eq!(
        new.ca_pem.matches("BEGIN CERTIFICATE").count(),
        2,
        "both CAs are published"
    );

    // During the overlap every client gets in: the old bundle with the old client
    // certificate, the new bundle with the new one, and the new CA alone.
    let (status, _) = one_shot(port, &old, PATH)
        .await
        .expect("old bundle, old client");
    assert_eq!(status, 200);
    let (status, _) = one_shot(port, &new, PATH)
        .await
        .expect("new bundle, new client");
    assert_eq!(status, 200);
    let (status, _) = one_shot(port, &new.with_ca(&new_ca), PATH)
        .await
        .expect("the new CA alone");
    assert_eq!(status, 200);
    let (_, chain) = connect(port, new.tls().unwrap()).await.unwrap();
    assert!(
        zen_certs::inspect::signed_by(&pem(&chain[0]), &new_ca),
        "the serving certificate is the new CA's"
    );

    // After the overlap, the old CA is gone from bundle and chain.
    wait_for("the old CA to retire", || {
        ca_secret(&data).get("previous-ca.crt").is_none()
    })
    .await;
    let err = one_shot(port, &old, PATH).await.unwrap_err();
    assert!(err.contains("TLS"), "{err}");
    let latest = Credentials::from_kubeconfig(&server.kubeconfig()).unwrap();
    assert_eq!(one_shot(port, &latest, PATH).await.unwrap().0, 200);
    let logs = server.logs();
    assert!(
        logs.contains("rotated the CA"),
        "{}",
        support::tail(&logs, 20)
    );
}

fn pem(der: &CertificateDer<'_>) -> String {
    let b64 = STANDARD.encode(der.as_ref());
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// Writes a certificate directory the way kubelet does: files are symlinks into a
/// timestamped directory, swapped by renaming one `..data` symlink.
fn write_volume(dir: &Path, generation: u32, files: &[(&str, &str)]) {
    let target = dir.join(format!("..{generation}"));
    std::fs::create_dir_all(&target).unwrap();
    for (name, contents) in files {
        std::fs::write(target.join(name), contents).unwrap();
    }
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(format!("..{generation}"), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    for (name, _) in files {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(format!("..data/{name}"), &link).unwrap();
        }
    }
}

fn issued(ca: &Ca) -> (String, String) {
    let names = [
        "zen-watcher.zen-system.svc".to_owned(),
        "localhost".to_owned(),
    ];
    let leaf = ca
        .issue_serving(
            &names,
            &["127.0.0.1".parse().unwrap()],
            Duration::from_secs(3600),
        )
        .unwrap();
    (leaf.cert_pem, leaf.key_pem)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mounted_certificates_are_reloaded_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let certs = dir.path().join("certs");
    let ingest_certs = dir.path().join("ingest-certs");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::create_dir_all(&ingest_certs).unwrap();
    let first_ca = Ca::generate("cert-manager-ca", Duration::from_secs(86_400)).unwrap();
    let (cert, key) = issued(&first_ca);
    write_volume(
        &certs,
        1,
        &[
            ("tls.crt", &cert),
            ("tls.key", &key),
            ("ca.crt", &first_ca.pem.cert_pem),
        ],
    );
    let public_ca = Ca::generate("public-ca", Duration::from_secs(86_400)).unwrap();
    let (ingest_cert, ingest_key) = issued(&public_ca);
    write_volume(
        &ingest_certs,
        1,
        &[("tls.crt", &ingest_cert), ("tls.key", &ingest_key)],
    );

    let server = DevServer::start(
        &data,
        &[
            "--cert-dir",
            certs.to_str().unwrap(),
            "--ingest-cert-dir",
            ingest_certs.to_str().unwrap(),
        ],
    );
    let port = server.secure_port;
    let creds = Credentials::from_kubeconfig(&server.kubeconfig()).unwrap();
    assert_eq!(
        creds.ca_pem, first_ca.pem.cert_pem,
        "the kubeconfig trusts the mounted CA"
    );
    let (status, serial) = one_shot(port, &creds, PATH).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(serial, CertInfo::of_pem(&cert, "t").unwrap().serial);
    // The ingest port serves its own certificate.
    let (status, serial) = one_shot(
        server.ingest_port,
        &creds.with_ca(&public_ca.pem.cert_pem),
        "/healthz",
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    assert_eq!(serial, CertInfo::of_pem(&ingest_cert, "t").unwrap().serial);

    // cert-manager renews from another CA: the new certificate is served, no restart.
    let pid = server.pid();
    let second_ca = Ca::generate("cert-manager-ca-2", Duration::from_secs(86_400)).unwrap();
    let (cert2, key2) = issued(&second_ca);
    write_volume(
        &certs,
        2,
        &[
            ("tls.crt", &cert2),
            ("tls.key", &key2),
            ("ca.crt", &second_ca.pem.cert_pem),
        ],
    );
    let want = CertInfo::of_pem(&cert2, "t").unwrap().serial;
    let creds2 = creds.with_ca(&second_ca.pem.cert_pem);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok((200, serial)) = one_shot(port, &creds2, PATH).await
            && serial == want
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the renewed certificate was not served in 20 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(server.pid(), pid);
    wait_for("the kubeconfig to trust the new CA", || {
        Credentials::from_kubeconfig(&server.kubeconfig())
            .is_ok_and(|c| c.ca_pem == second_ca.pem.cert_pem)
    })
    .await;

    // A key that does not belong to the certificate is refused; the last good one stays.
    let (_, other_key) = issued(&second_ca);
    write_volume(
        &certs,
        3,
        &[
            ("tls.crt", &cert2),
            ("tls.key", &other_key),
            ("ca.crt", &second_ca.pem.cert_pem),
        ],
    );
    wait_for("the broken update to be reported", || {
        server
            .logs()
            .contains("the private key does not belong to the certificate")
    })
    .await;
    let (status, serial) = one_shot(port, &creds2, PATH).await.unwrap();
    assert_eq!((status, serial), (200, want));
}
