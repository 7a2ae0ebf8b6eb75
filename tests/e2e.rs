//! End to end: `zen-watcher serve` registered with a real kube-apiserver (on a real etcd),
//! everything on loopback, checked with the real `kubectl` through kube-apiserver.
//!
//! Gated on `ZEN_E2E_KUBE_APISERVER` and `ZEN_E2E_ETCD` (paths of the two binaries): without
//! them the one test here says so and passes. `DEVELOPERS.md` says how to run it and what
//! each step checks; every step prints how long it took (`-- --nocapture` to see it live).
//!
//! kube-apiserver is configured as for aggregated API servers, with a PKI made by
//! `zen_certs`: serving, client and front-proxy (request-header) CAs, a service-account
//! key. zen-watcher runs outside it, so its Service is an ExternalName Service for
//! `localhost` (kube-apiserver refuses loopback endpoint addresses) and the APIService's and
//! webhooks' `service.port` is the port serve listens on; kube-apiserver then dials
//! `localhost:<port>` with the server name `zen-watcher.zen-system.svc`, as in the recordings
//! of `testdata/kube-apiserver-1.28`. There is no kube-controller-manager either: the one
//! thing of it the checks rely on, aggregating ClusterRoles into `view`, the suite does
//! itself.

mod support;

use std::{
    fs::OpenOptions,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use base64::{Engine, engine::general_purpose::STANDARD};
use serde_json::{Value, json};
use support::delivery;
use zen_certs::{
    inspect::CertInfo,
    issue::{Ca, CertifiedKeyPem},
};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const SKIP: &str = "skipping: set ZEN_E2E_KUBE_APISERVER and ZEN_E2E_ETCD to paths of kube-apiserver and etcd binaries";
const DAY: Duration = Duration::from_secs(86_400);
/// The name kube-apiserver verifies zen-watcher's certificate for (TLS server name).
const SERVICE_HOST: &str = "zen-watcher.zen-system.svc";
const API_SERVICE: &str = "v1alpha1.zen.watcher.io";
/// So a restarted serve is the holder of its own Lease at once.
const POD_NAME: &str = "zen-watcher-e2e";

/// A non-empty path from the environment.
fn path_from_env(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

#[test]
fn serve_in_a_real_cluster() {
    let (Some(kube_apiserver), Some(etcd)) = (
        path_from_env("ZEN_E2E_KUBE_APISERVER"),
        path_from_env("ZEN_E2E_ETCD"),
    ) else {
        eprintln!("{SKIP}");
        return;
    };
    for (var, path) in [
        ("ZEN_E2E_KUBE_APISERVER", &kube_apiserver),
        ("ZEN_E2E_ETCD", &etcd),
    ] {
        assert!(
            path.is_file(),
            "{var}={} is not a file: give the path of the binary",
            path.display()
        );
    }
    // (support::etcd_server starts the etcd that ZEN_E2E_ETCD names.)
    let mut steps = Steps::new();
    let mut cluster = steps.run("start etcd and kube-apiserver", || {
        Cluster::start(&kube_apiserver)
    });
    steps.run(
        "install zen-watcher (no Deployment, ExternalName Service)",
        || cluster.install(),
    );
    steps.run("start zen-watcher serve", || {
        cluster.start_serve(&[]);
        cluster.wait_serve_ready();
    });
    steps.run("1. APIService v1alpha1.zen.watcher.io Available", || {
        cluster.apiservice_available()
    });
    steps.run("apply manifests/policies/", || cluster.apply_policies());
    steps.run("2. kubectl get observations -A columns", || {
        cluster.observation_columns()
    });
    steps.run(
        "3. RBAC: nobody forbidden, view reads but cannot delete",
        || cluster.rbac(),
    );
    steps.run(
        "4. admission: invalid Ingestors denied, defaults applied",
        || cluster.admission(),
    );
    steps.run(
        "4b. a signed GitHub delivery becomes an Observation",
        || cluster.ingest(),
    );
    steps.run(
        "5. serving certificate rotation (Secret deleted), APIService stays Available",
        || cluster.serving_rotation(),
    );
    steps.run(
        "6. CA rotation (serve restarted with a shorter --ca-validity)",
        || cluster.ca_rotation(),
    );
    steps.summary();
}

/// Runs the suite's steps, printing each one's duration; names the failed one on a panic.
struct Steps {
    started: Instant,
    done: Vec<(String, Duration)>,
    current: Option<(String, Instant)>,
}

impl Steps {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            done: Vec::new(),
            current: None,
        }
    }

    fn run<T>(&mut self, name: &str, step: impl FnOnce() -> T) -> T {
        eprintln!("e2e: {name} ...");
        self.current = Some((name.to_owned(), Instant::now()));
        let out = step();
        if let Some((name, at)) = self.current.take() {
            let took = at.elapsed();
            eprintln!("e2e: {name}: ok in {:.1} s", took.as_secs_f64());
            self.done.push((name, took));
        }
        out
    }

    fn summary(&self) {
        eprintln!("e2e: every step passed:");
        for (name, took) in &self.done {
            eprintln!("e2e: {:>7.1} s  {name}", took.as_secs_f64());
        }
        eprintln!(
            "e2e: {:>7.1} s  in all",
            self.started.elapsed().as_secs_f64()
        );
    }
}

impl Drop for Steps {
    fn drop(&mut self) {
        if let Some((name, at)) = &self.current
            && std::thread::panicking()
        {
            eprintln!(
                "e2e: FAILED: {name} (after {:.1} s)",
                at.elapsed().as_secs_f64()
            );
        }
    }
}

/// Polls `check` every half second until it returns `Ok`, failing the test after `timeout`
/// with the last reason it gave.
fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match check() {
            Ok(v) => return v,
            Err(why) if Instant::now() >= deadline => {
                panic!("{what}: not within {} s; last: {why}", timeout.as_secs())
            }
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The certificates of a PEM bundle, each as its own PEM text.
fn split_pem(bundle: &str) -> Vec<String> {
    bundle
        .split_inclusive("-----END CERTIFICATE-----")
        .filter(|p| p.contains("-----BEGIN CERTIFICATE-----"))
        .map(|p| format!("{}\n", p.trim()))
        .collect()
}

fn decode_b64(what: &str, b64: &Value) -> Result<String, String> {
    let text = b64.as_str().ok_or_else(|| format!("{what}: absent"))?;
    let bytes = STANDARD
        .decode(text)
        .map_err(|e| format!("{what}: not base64: {e}"))?;
    String::from_utf8(bytes).map_err(|e| format!("{what}: not text: {e}"))
}

/// The serial of the first certificate a server presented.
fn leaf_serial(answer: &support::tls::Answer) -> String {
    let leaf = answer
        .chain
        .first()
        .expect("the server presented a certificate");
    CertInfo::of_der(leaf.as_ref(), "served certificate")
        .expect("a parsable served certificate")
        .serial
}

/// A PEM `PUBLIC KEY` (SubjectPublicKeyInfo) for a P-256 point: kube-apiserver's
/// `--service-account-key-file` reads public keys in that form.
fn p256_public_key_pem(point: &[u8]) -> String {
    assert!(
        point.len() == 65 && point[0] == 4,
        "an uncompressed P-256 point"
    );
    // SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING (0 unused bits) ... }
    let mut der = vec![
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08,
        0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
    ];
    der.extend_from_slice(point);
    let b64 = STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect();
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        lines.join("\n")
    )
}

/// The control plane's PKI, all from `zen_certs`.
struct Pki {
    /// Verifies kube-apiserver's serving certificate (kubectl's and serve's trust).
    cluster_ca: Ca,
    /// CN=admin, O=system:masters, of the client CA.
    admin: CertifiedKeyPem,
}

/// What the suite runs: etcd, kube-apiserver and zen-watcher serve, each killed on drop.
struct Cluster {
    rt: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
    pki: Pki,
    kubeconfig: PathBuf,
    apiserver: Option<Child>,
    serve: Option<Child>,
    /// When the running serve was started.
    serve_started: Instant,
    secure_port: u16,
    ingest_port: u16,
    metrics_port: u16,
    /// Last: dropped (killed) after the processes that use it.
    etcd: support::etcd_server::Etcd,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for mut child in [self.serve.take(), self.apiserver.take()]
            .into_iter()
            .flatten()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- kube-apiserver log (last lines) ---\n{}\n--- zen-watcher serve log (last lines) ---\n{}\n--- etcd log (last lines) ---\n{}",
                support::tail(&self.log("kube-apiserver.log"), 40),
                support::tail(&self.log("serve.log"), 60),
                support::tail(&self.etcd.log(), 10),
            );
        }
    }
}

impl Cluster {
    /// etcd, then kube-apiserver with its PKI, an admin kubeconfig; waits for /readyz.
    fn start(kube_apiserver: &Path) -> Self {
        let etcd = support::etcd_server::Etcd::start();
        let dir = tempfile::tempdir().expect("temp dir");
        let pki_dir = dir.path().join("pki");
        std::fs::create_dir_all(&pki_dir).expect("pki dir");
        let file = |name: &str, text: &str| {
            let path = pki_dir.join(name);
            std::fs::write(&path, text).expect("write PKI file");
            path
        };
        let issue = "issuing the e2e PKI";
        let cluster_ca = Ca::generate("e2e-cluster-ca", DAY).expect(issue);
        let serving = cluster_ca
            .issue_serving(
                &["localhost".into(), "kubernetes.default.svc".into()],
                &["127.0.0.1".parse().expect("an IP")],
                DAY,
            )
            .expect(issue);
        let client_ca = Ca::generate("e2e-client-ca", DAY).expect(issue);
        let admin = client_ca
            .issue_client("admin", Some("system:masters"), DAY)
            .expect(issue);
        let front_proxy_ca = Ca::generate("e2e-front-proxy-ca", DAY).expect(issue);
        let front_proxy = front_proxy_ca
            .issue_client("front-proxy-client", None, DAY)
            .expect(issue);
        // A fresh P-256 key signs service-account tokens (the key of a throwaway
        // certificate: zen_certs makes keys with certificates).
        let signer = Ca::generate("e2e-service-account-signer", DAY).expect(issue);
        let signer_point = CertInfo::of_pem(&signer.pem.cert_pem, "signer")
            .expect("signer certificate")
            .public_key;

        let port = support::free_port();
        let path = |p: PathBuf| p.display().to_string();
        let args = [
            format!("--etcd-servers={}", etcd.endpoint()),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--secure-port={port}"),
            format!("--cert-dir={}", path(dir.path().join("apiserver-certs"))),
            format!(
                "--tls-cert-file={}",
                path(file("apiserver.crt", &serving.cert_pem))
            ),
            format!(
                "--tls-private-key-file={}",
                path(file("apiserver.key", &serving.key_pem))
            ),
            format!(
                "--client-ca-file={}",
                path(file("client-ca.crt", &client_ca.pem.cert_pem))
            ),
            format!(
                "--requestheader-client-ca-file={}",
                path(file("front-proxy-ca.crt", &front_proxy_ca.pem.cert_pem))
            ),
            "--requestheader-allowed-names=front-proxy-client".into(),
            "--requestheader-username-headers=X-Remote-User".into(),
            "--requestheader-group-headers=X-Remote-Group".into(),
            "--requestheader-extra-headers-prefix=X-Remote-Extra-".into(),
            format!(
                "--proxy-client-cert-file={}",
                path(file("front-proxy-client.crt", &front_proxy.cert_pem))
            ),
            format!(
                "--proxy-client-key-file={}",
                path(file("front-proxy-client.key", &front_proxy.key_pem))
            ),
            "--enable-aggregator-routing=false".into(),
            format!(
                "--service-account-key-file={}",
                path(file("sa.pub", &p256_public_key_pem(&signer_point)))
            ),
            format!(
                "--service-account-signing-key-file={}",
                path(file("sa.key", &signer.pem.key_pem))
            ),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            "--authorization-mode=Node,RBAC".into(),
            "--enable-admission-plugins=NamespaceLifecycle,MutatingAdmissionWebhook,ValidatingAdmissionWebhook".into(),
            "--service-cluster-ip-range=10.0.0.0/24".into(),
            // Nothing here uses the `kubernetes` Service's endpoints, and their reconciler
            // objects to a loopback advertise address.
            "--endpoint-reconciler-type=none".into(),
        ];
        let kubeconfig = dir.path().join("admin.kubeconfig");
        let config = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "e2e", "cluster": {
                "server": format!("https://127.0.0.1:{port}"),
                "certificate-authority-data": STANDARD.encode(&cluster_ca.pem.cert_pem),
            }}],
            "users": [{"name": "admin", "user": {
                "client-certificate-data": STANDARD.encode(&admin.cert_pem),
                "client-key-data": STANDARD.encode(&admin.key_pem),
            }}],
            "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": "admin"}}],
            "current-context": "e2e",
        });
        std::fs::write(&kubeconfig, config.to_string()).expect("write kubeconfig");

        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let log = std::fs::File::create(dir.path().join("kube-apiserver.log"))
            .expect("kube-apiserver log");
        let apiserver = Command::new(kube_apiserver)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {} failed: {e}", kube_apiserver.display()));

        let mut cluster = Cluster {
            rt,
            dir,
            pki: Pki { cluster_ca, admin },
            kubeconfig,
            apiserver: Some(apiserver),
            serve: None,
            serve_started: Instant::now(),
            secure_port: support::free_port(),
            ingest_port: support::free_port(),
            metrics_port: support::free_port(),
            etcd,
        };
        let (ca, admin) = (
            cluster.pki.cluster_ca.pem.cert_pem.clone(),
            cluster.pki.admin.clone(),
        );
        wait_for("kube-apiserver /readyz", Duration::from_secs(120), || {
            cluster.check_alive();
            let r = cluster.https(port, "localhost", &ca, Some(&admin), "GET", "/readyz", &[])?;
            (r.status == 200)
                .then_some(())
                .ok_or_else(|| format!("/readyz answered {}", r.status))
        });
        // serve reads the authentication ConfigMap kube-apiserver publishes at start.
        wait_for(
            "kube-system/extension-apiserver-authentication",
            Duration::from_secs(60),
            || {
                cluster
                    .kubectl_json(&[
                        "get",
                        "configmap",
                        "-n",
                        "kube-system",
                        "extension-apiserver-authentication",
                        "-o",
                        "json",
                    ])
                    .map(|_| ())
            },
        );
        let version = cluster
            .kubectl_json(&["version", "-o", "json"])
            .unwrap_or_default();
        eprintln!(
            "e2e:   kube-apiserver {} on port {port}, etcd at {}",
            version["serverVersion"]["gitVersion"]
                .as_str()
                .unwrap_or("(version unknown)"),
            cluster.etcd.endpoint()
        );
        cluster
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }

    /// Fails the test if kube-apiserver or serve has exited.
    fn check_alive(&mut self) {
        let exited = |c: &mut Option<Child>| {
            c.as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
                .map(|s| s.to_string())
        };
        if let Some(status) = exited(&mut self.apiserver) {
            panic!("kube-apiserver exited ({status})");
        }
        if let Some(status) = exited(&mut self.serve) {
            panic!("zen-watcher serve exited ({status})");
        }
    }

    /// One HTTPS request (errors returned): to kube-apiserver, or to zen-watcher's ports as
    /// kube-apiserver and webhook senders reach them.
    #[allow(clippy::too_many_arguments)]
    fn https(
        &self,
        port: u16,
        server_name: &str,
        trust: &str,
        client: Option<&CertifiedKeyPem>,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<support::tls::Answer, String> {
        self.https_with_body(port, server_name, trust, client, method, path, headers, b"")
    }

    #[allow(clippy::too_many_arguments)]
    fn https_with_body(
        &self,
        port: u16,
        server_name: &str,
        trust: &str,
        client: Option<&CertifiedKeyPem>,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<support::tls::Answer, String> {
        let request = support::tls::Request {
            port,
            server_name,
            trust,
            client: client.map(|c| (c.cert_pem.as_str(), c.key_pem.as_str())),
            method,
            path,
            headers,
            body,
        };
        self.rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(20), support::tls::send(request))
                .await
                .map_err(|_| format!("{method} {path} on port {port}: no answer in 20 s"))?
        })
    }

    // --- kubectl, as the admin ---

    fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_stdin(args, None)
    }

    fn kubectl_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let cache = format!(
            "--cache-dir={}",
            self.dir.path().join("kube-cache").display()
        );
        let mut all = vec!["--request-timeout=60s", cache.as_str()];
        all.extend_from_slice(args);
        support::kubectl_with(&self.kubeconfig, &all, stdin)
    }

    /// What went wrong with a kubectl run, for a test failure.
    fn explain(&self, args: &[&str], out: &Output) -> String {
        format!(
            "kubectl {} failed ({}):\nstdout: {}\nstderr: {}\nzen-watcher serve log (last lines):\n{}",
            args.join(" "),
            out.status,
            stdout(out),
            stderr(out),
            support::tail(&self.log("serve.log"), 30),
        )
    }

    fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(out.status.success(), "{}", self.explain(args, &out));
        stdout(&out)
    }

    fn kubectl_json(&self, args: &[&str]) -> Result<Value, String> {
        let out = self.kubectl(args);
        if !out.status.success() {
            return Err(format!(
                "kubectl {}: {}",
                args.join(" "),
                stderr(&out).trim()
            ));
        }
        serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("kubectl {}: not JSON ({e})", args.join(" ")))
    }

    fn kubectl_json_ok(&self, args: &[&str]) -> Value {
        self.kubectl_json(args).unwrap_or_else(|e| {
            let log = support::tail(&self.log("serve.log"), 30);
            panic!("{e}\nzen-watcher serve log (last lines):\n{log}")
        })
    }

    /// `kubectl apply -f -` of `manifest` (YAML or JSON), which must succeed.
    fn apply(&self, manifest: &str) -> String {
        let args = ["apply", "-f", "-"];
        let out = self.kubectl_stdin(&args, Some(manifest));
        assert!(
            out.status.success(),
            "{}\nmanifest:\n{manifest}",
            self.explain(&args, &out)
        );
        stdout(&out).trim().to_owned()
    }

    /// `kubectl apply -f -` of `manifest`, which must be refused; returns what kubectl said.
    fn apply_refused(&self, manifest: &str, extra: &[&str]) -> String {
        let mut args = vec!["apply", "-f", "-"];
        args.extend_from_slice(extra);
        let out = self.kubectl_stdin(&args, Some(manifest));
        assert!(
            !out.status.success(),
            "kubectl {} was accepted, expected a denial:\n{}\nmanifest:\n{manifest}",
            args.join(" "),
            stdout(&out)
        );
        stderr(&out)
    }

    // --- zen-watcher serve ---

    fn start_serve(&mut self, extra: &[&str]) {
        let log_path = self.dir.path().join("serve.log");
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("serve log");
        {
            use std::io::Write;
            let _ = writeln!(log, "=== e2e: zen-watcher serve {}", extra.join(" "));
        }
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_zen-watcher"));
        cmd.arg("serve")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["--bind-address", "127.0.0.1"])
            .args(["--secure-port", &self.secure_port.to_string()])
            .args(["--ingest-port", &self.ingest_port.to_string()])
            .args(["--metrics-port", &self.metrics_port.to_string()])
            .arg("--store")
            .arg(format!(
                "redb:{}",
                self.dir.path().join("zen.redb").display()
            ))
            .args(extra)
            .env_remove("KUBECONFIG")
            .env_remove("POD_NAMESPACE")
            .env("POD_NAME", POD_NAME);
        // Flags only: nothing from the caller's ZEN_* variables.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("ZEN_") {
                cmd.env_remove(name);
            }
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("start zen-watcher serve");
        self.serve = Some(child);
        self.serve_started = Instant::now();
    }

    fn stop_serve(&mut self) {
        if let Some(mut child) = self.serve.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The CA bundle zen-watcher stored in its CA Secret.
    fn ca_bundle(&self) -> Result<String, String> {
        let secret = self.kubectl_json(&[
            "get",
            "secret",
            "-n",
            "zen-system",
            "zen-watcher-ca",
            "-o",
            "json",
        ])?;
        decode_b64(
            "zen-watcher-ca/ca-bundle.crt",
            &secret["data"]["ca-bundle.crt"],
        )
    }

    /// Every caBundle kube-apiserver verifies zen-watcher with, decoded, by where it is.
    fn registered_bundles(&self) -> Result<Vec<(String, String)>, String> {
        let mut out = Vec::new();
        let api = self.kubectl_json(&["get", "apiservice", API_SERVICE, "-o", "json"])?;
        out.push((
            format!("APIService {API_SERVICE}"),
            decode_b64("APIService caBundle", &api["spec"]["caBundle"])?,
        ));
        for kind in [
            "mutatingwebhookconfiguration",
            "validatingwebhookconfiguration",
        ] {
            let config = self.kubectl_json(&["get", kind, "zen-watcher", "-o", "json"])?;
            for hook in config["webhooks"].as_array().into_iter().flatten() {
                let what = format!("{kind} webhook {}", hook["name"]);
                let bundle = decode_b64(&what, &hook["clientConfig"]["caBundle"])?;
                out.push((what, bundle));
            }
        }
        Ok(out)
    }

    /// Whether every caBundle is `bundle`.
    fn bundles_are(&self, bundle: &str) -> Result<(), String> {
        for (what, got) in self.registered_bundles()? {
            if got != bundle {
                return Err(format!(
                    "{what} has a caBundle of {} certificate(s) that is not the CA Secret's",
                    split_pem(&got).len()
                ));
            }
        }
        Ok(())
    }

    /// Waits until serve stored its CA, injected it everywhere and answers /readyz on its
    /// secure port for kube-apiserver's server name; returns the bundle.
    fn wait_serve_ready(&mut self) -> String {
        wait_for(
            "zen-watcher's CA in every caBundle and its secure port ready",
            Duration::from_secs(90),
            || {
                self.check_alive();
                let bundle = self.ca_bundle()?;
                self.bundles_are(&bundle)?;
                let r = self.https(
                    self.secure_port,
                    SERVICE_HOST,
                    &bundle,
                    None,
                    "GET",
                    "/readyz",
                    &[],
                )?;
                (r.status == 200)
                    .then_some(bundle)
                    .ok_or_else(|| format!("serve /readyz answered {}", r.status))
            },
        )
    }

    /// The APIService's `Available` condition.
    fn available_condition(&self) -> Result<Value, String> {
        let api = self.kubectl_json(&["get", "apiservice", API_SERVICE, "-o", "json"])?;
        api["status"]["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "Available"))
            .cloned()
            .ok_or_else(|| format!("no Available condition yet: {}", api["status"]))
    }

    fn wait_available(&mut self, timeout: Duration) -> Value {
        wait_for("APIService Available=True", timeout, || {
            self.check_alive();
            let c = self.available_condition()?;
            if c["status"] == "True" {
                Ok(c)
            } else {
                Err(format!("Available: {c}"))
            }
        })
    }

    // --- the steps ---

    /// `kubectl kustomize manifests/` without the Deployment, with an ExternalName Service and
    /// every `service.port` at serve's secure port; waits for the CRDs.
    fn install(&mut self) {
        let out = Command::new("kubectl")
            .args(["kustomize", &format!("{ROOT}/manifests")])
            .output()
            .expect("kubectl on PATH");
        assert!(
            out.status.success(),
            "kubectl kustomize manifests/ failed: {}",
            stderr(&out)
        );
        let docs: Vec<Value> = serde_saphyr::from_multiple(&stdout(&out))
            .expect("the rendered install parses document by document");
        let secure = self.secure_port;
        let mut items = Vec::new();
        let mut patched = Vec::new();
        for mut doc in docs {
            match doc["kind"].as_str().unwrap_or_default() {
                "Deployment" => continue,
                "Service" if doc["metadata"]["name"] == "zen-watcher" => continue,
                "APIService" => {
                    doc["spec"]["service"]["port"] = json!(secure);
                    patched.push(format!("APIService {}", doc["metadata"]["name"]));
                }
                "MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration" => {
                    for hook in doc["webhooks"].as_array_mut().into_iter().flatten() {
                        let service = &mut hook["clientConfig"]["service"];
                        assert!(service.is_object(), "webhook without a service: {hook}");
                        service["port"] = json!(secure);
                        patched.push(format!("webhook {}", hook["name"]));
                    }
                }
                _ => {}
            }
            items.push(doc);
        }
        assert_eq!(
            patched.len(),
            5,
            "APIService and four webhooks: {patched:?}"
        );
        // kube-apiserver dials the ExternalName (localhost) at the registrations' port.
        items.push(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "zen-watcher", "namespace": "zen-system",
                         "labels": {"app.kubernetes.io/name": "zen-watcher"}},
            "spec": {"type": "ExternalName", "externalName": "localhost", "ports": [
                {"name": "https", "port": secure, "protocol": "TCP"},
                {"name": "ingest", "port": self.ingest_port, "protocol": "TCP"},
            ]},
        }));
        // Namespaces first, then the rest.
        items.sort_by_key(|d| d["kind"] != "Namespace");
        self.apply(&json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string());
        self.kubectl_ok(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/ingestors.config.zen.watcher.io",
            "crd/ingestorpolicies.config.zen.watcher.io",
        ]);
    }

    /// Step 1: the APIService turns Available once serve injected its caBundle.
    fn apiservice_available(&mut self) {
        let condition = self.wait_available(Duration::from_secs(120));
        eprintln!(
            "e2e:   Available ({}) {:.1} s after serve started",
            condition["reason"].as_str().unwrap_or_default(),
            self.serve_started.elapsed().as_secs_f64()
        );
        // kube-apiserver's discovery takes the group from zen-watcher once it is available.
        wait_for(
            "kubectl api-resources --api-group=zen.watcher.io",
            Duration::from_secs(90),
            || {
                let out =
                    self.kubectl(&["api-resources", "--api-group=zen.watcher.io", "-o", "name"]);
                let listed = stdout(&out);
                let names: Vec<&str> = listed.lines().collect();
                if out.status.success()
                    && names.contains(&"observations.zen.watcher.io")
                    && names.contains(&"webhookendpoints.zen.watcher.io")
                {
                    Ok(())
                } else {
                    Err(format!("listed {names:?}; {}", stderr(&out).trim()))
                }
            },
        );
        eprintln!(
            "e2e:   in kube-apiserver's discovery {:.1} s after serve started",
            self.serve_started.elapsed().as_secs_f64()
        );
        let table = self.kubectl_ok(&["get", "apiservice", API_SERVICE]);
        let row: Vec<&str> = table
            .lines()
            .nth(1)
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        assert_eq!(
            row.get(..3),
            Some(&[API_SERVICE, "zen-system/zen-watcher", "True"][..]),
            "{table}"
        );
    }

    fn apply_policies(&mut self) {
        let dir = format!("{ROOT}/manifests/policies");
        let out = wait_for(
            "kubectl apply -k manifests/policies/",
            Duration::from_secs(60),
            || {
                let out = self.kubectl(&["apply", "-k", &dir]);
                if out.status.success() {
                    Ok(stdout(&out))
                } else {
                    Err(stderr(&out))
                }
            },
        );
        for policy in ["zen-watcher-baseline", "zen-watcher-defaults"] {
            assert!(out.contains(policy), "{out}");
        }
    }

    /// Step 2: an Observation applied through kube-apiserver is listed with DESIGN.md's
    /// columns.
    fn observation_columns(&mut self) {
        self.apply(
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "e2e"}})
                .to_string(),
        );
        let created = self.apply(
            &json!({
                "apiVersion": "zen.watcher.io/v1alpha1", "kind": "Observation",
                "metadata": {"name": "shell-in-web", "namespace": "e2e"},
                "spec": {"source": "falco", "category": "security", "severity": "critical",
                         "eventType": "runtime_alert", "title": "Shell spawned in web"}
            })
            .to_string(),
        );
        assert_eq!(created, "observation.zen.watcher.io/shell-in-web created");
        let columns =
            |line: &str| -> Vec<String> { line.split_whitespace().map(str::to_owned).collect() };
        let out = self.kubectl_ok(&["get", "observations", "-A"]);
        let mut lines = out.lines();
        assert_eq!(
            columns(lines.next().unwrap_or_default()),
            [
                "NAMESPACE",
                "NAME",
                "SOURCE",
                "CATEGORY",
                "SEVERITY",
                "TYPE",
                "COUNT",
                "AGE"
            ],
            "{out}"
        );
        let row = lines
            .map(columns)
            .find(|r| r.get(1).map(String::as_str) == Some("shell-in-web"))
            .unwrap_or_else(|| panic!("no shell-in-web row in:\n{out}"));
        assert_eq!(
            row[..7],
            [
                "e2e",
                "shell-in-web",
                "falco",
                "security",
                "critical",
                "runtime_alert",
                "1"
            ],
            "{out}"
        );
        let out = self.kubectl_ok(&["get", "observations", "-n", "e2e"]);
        assert_eq!(
            columns(out.lines().next().unwrap_or_default()),
            [
                "NAME", "SOURCE", "CATEGORY", "SEVERITY", "TYPE", "COUNT", "AGE"
            ],
            "{out}"
        );
    }

    /// What kube-controller-manager's clusterrole-aggregation controller does, once: the
    /// rules of every ClusterRole labelled `<label>=true` become `role`'s rules.
    fn aggregate_cluster_role(&self, role: &str, label: &str) {
        let labelled = self.kubectl_json_ok(&[
            "get",
            "clusterroles",
            "-l",
            &format!("{label}=true"),
            "-o",
            "json",
        ]);
        let mut rules: Vec<Value> = Vec::new();
        for r in labelled["items"].as_array().into_iter().flatten() {
            for rule in r["rules"].as_array().into_iter().flatten() {
                if !rules.contains(rule) {
                    rules.push(rule.clone());
                }
            }
        }
        assert!(
            rules
                .iter()
                .any(|r| r["apiGroups"] == json!(["zen.watcher.io"])
                    && r["resources"]
                        .as_array()
                        .is_some_and(|res| res.contains(&json!("observations")))),
            "no ClusterRole labelled {label} grants Observations: {labelled}"
        );
        self.kubectl_ok(&[
            "patch",
            "clusterrole",
            role,
            "--type=merge",
            "-p",
            &json!({"rules": rules}).to_string(),
        ]);
    }

    /// Step 3: kube-apiserver's RBAC (and zen-watcher's SubjectAccessReviews behind it).
    fn rbac(&mut self) {
        let forbidden = |args: &[&str], user: &str, verb: &str, ns: &str| {
            let out = self.kubectl(args);
            let err = stderr(&out);
            let want = format!(
                "User \"{user}\" cannot {verb} resource \"observations\" in API group \"zen.watcher.io\" in the namespace \"{ns}\""
            );
            assert!(
                !out.status.success()
                    && err.contains("Error from server (Forbidden)")
                    && err.contains(&want),
                "kubectl {}: expected Forbidden ({want}), got {}:\nstdout: {}\nstderr: {err}",
                args.join(" "),
                out.status,
                stdout(&out)
            );
        };
        forbidden(
            &["get", "observations", "-n", "e2e", "--as=nobody"],
            "nobody",
            "list",
            "e2e",
        );

        self.aggregate_cluster_role("view", "rbac.authorization.k8s.io/aggregate-to-view");
        self.apply(
            &json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": "viewer", "namespace": "e2e"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "viewer"}]
            })
            .to_string(),
        );
        let listed = wait_for(
            "viewer lists Observations in e2e",
            Duration::from_secs(30),
            || {
                let out = self.kubectl(&["get", "observations", "-n", "e2e", "--as=viewer"]);
                if out.status.success() {
                    Ok(stdout(&out))
                } else {
                    Err(stderr(&out))
                }
            },
        );
        assert!(listed.contains("shell-in-web"), "{listed}");
        self.kubectl_ok(&[
            "get",
            "observation",
            "shell-in-web",
            "-n",
            "e2e",
            "--as=viewer",
            "-o",
            "name",
        ]);
        forbidden(
            &[
                "delete",
                "observation",
                "shell-in-web",
                "-n",
                "e2e",
                "--as=viewer",
            ],
            "viewer",
            "delete",
            "e2e",
        );
        forbidden(
            &["get", "observations", "-n", "default", "--as=viewer"],
            "viewer",
            "list",
            "default",
        );
        // Still there.
        self.kubectl_ok(&["get", "observation", "shell-in-web", "-n", "e2e"]);
    }

    /// examples/github.yaml without what the default IngestorPolicy fills in.
    fn github_ingestor_without_defaults() -> Value {
        let text = std::fs::read_to_string(format!("{ROOT}/examples/github.yaml"))
            .expect("examples/github.yaml");
        let mut ingestor: Value = serde_saphyr::from_str(&text).expect("examples/github.yaml");
        let spec = ingestor["spec"].as_object_mut().expect("a spec");
        spec.remove("dedup");
        spec.remove("ttl");
        for source in ingestor["spec"]["sources"]
            .as_array_mut()
            .into_iter()
            .flatten()
        {
            let source = source.as_object_mut().expect("a source");
            source.remove("rateLimit");
            source.remove("maxBodyBytes");
        }
        ingestor
    }

    /// Whether `ingestor` carries what manifests/policies/defaults.yaml writes.
    fn defaulted(ingestor: &Value) -> Result<(), String> {
        let spec = &ingestor["spec"];
        let source = &spec["sources"][0];
        let want = [
            (
                "spec.sources[0].rateLimit",
                &source["rateLimit"],
                json!({"requestsPerSecond": 50, "burst": 100}),
            ),
            (
                "spec.sources[0].maxBodyBytes",
                &source["maxBodyBytes"],
                json!(1_048_576),
            ),
            ("spec.dedup.window", &spec["dedup"]["window"], json!("5m")),
            ("spec.ttl.max", &spec["ttl"]["max"], json!("720h")),
            ("spec.ttl.default", &spec["ttl"]["default"], json!("168h")),
        ];
        for (field, got, want) in want {
            if *got != want {
                return Err(format!("{field} is {got}, want {want}"));
            }
        }
        Ok(())
    }

    /// Step 4: the webhooks through kube-apiserver: denials with their messages, defaults
    /// written by the mutating webhook, namespace labels followed.
    fn admission(&mut self) {
        // Namespaces security, platform, shop (unlabelled) and the Secrets of the examples.
        self.kubectl_ok(&["apply", "-f", &format!("{ROOT}/examples/secrets.yaml")]);
        let read = |name: &str| {
            std::fs::read_to_string(format!("{ROOT}/tests/policy/bad/{name}"))
                .unwrap_or_else(|e| panic!("tests/policy/bad/{name}: {e}"))
        };
        let validating =
            "admission webhook \"validate.ingestors.config.zen.watcher.io\" denied the request: ";

        // A CEL expression that does not compile.
        let err = self.apply_refused(&read("bad-cel.yaml"), &[]);
        let want = format!(
            "{validating}Ingestor.config.zen.watcher.io \"typo\" is invalid: spec.mapping.severity: Invalid value: \"payload.reason == 'OOMKilling' ? 'high' :\": compilation failed:"
        );
        assert!(err.contains(&want), "want {want:?} in:\n{err}");
        let out = self.kubectl(&["get", "ingestor", "typo", "-n", "shop"]);
        assert!(
            !out.status.success() && stderr(&out).contains("NotFound"),
            "the denied Ingestor was stored: {}",
            stdout(&out)
        );

        // auth.type none in a namespace without the opt-out label. The IngestorPolicies were
        // applied a moment ago: serve follows them by watch, so wait for the denial.
        let open_door = read("unauthenticated.yaml");
        let denial = format!(
            "{validating}IngestorPolicy \"zen-watcher-require-authentication\" denied the request: Ingestor open-door has webhook sources with auth.type none"
        );
        wait_for(
            "the require-authentication policy in force",
            Duration::from_secs(30),
            || {
                let out =
                    self.kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], Some(&open_door));
                if !out.status.success() && stderr(&out).contains(&denial) {
                    Ok(())
                } else {
                    Err(format!("{}: {}{}", out.status, stdout(&out), stderr(&out)))
                }
            },
        );
        let err = self.apply_refused(&open_door, &[]);
        assert!(
            err.contains("Error from server (Forbidden)") && err.contains(&denial),
            "want Forbidden with {denial:?} in:\n{err}"
        );

        // A valid Ingestor comes back with the defaults of manifests/policies/defaults.yaml.
        let github = Self::github_ingestor_without_defaults().to_string();
        wait_for(
            "the defaults policy in force (server dry run)",
            Duration::from_secs(30),
            || {
                let dry = self.kubectl_stdin(
                    &["apply", "--dry-run=server", "-o", "json", "-f", "-"],
                    Some(&github),
                );
                if !dry.status.success() {
                    return Err(stderr(&dry));
                }
                let object: Value =
                    serde_json::from_slice(&dry.stdout).map_err(|e| e.to_string())?;
                Self::defaulted(&object)
            },
        );
        assert_eq!(
            self.apply(&github),
            "ingestor.config.zen.watcher.io/github-security created"
        );
        let stored = self.kubectl_json_ok(&[
            "get",
            "ingestor",
            "github-security",
            "-n",
            "platform",
            "-o",
            "json",
        ]);
        if let Err(e) = Self::defaulted(&stored) {
            panic!("{e}: {stored}");
        }

        // Opting the namespace out lets the unauthenticated Ingestor through (serve follows
        // Namespace labels).
        self.kubectl_ok(&[
            "label",
            "namespace",
            "shop",
            "zen.watcher.io/allow-unauthenticated=true",
        ]);
        wait_for(
            "the opt-out label followed",
            Duration::from_secs(30),
            || {
                let out =
                    self.kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], Some(&open_door));
                if out.status.success() {
                    Ok(())
                } else {
                    Err(stderr(&out))
                }
            },
        );
    }

    /// Step 4b: the Ingestor of step 4 becomes Ready, gets a WebhookEndpoint, and a delivery
    /// signed as GitHub signs it is stored as an Observation kubectl lists.
    fn ingest(&mut self) {
        let path = "/hooks/platform/github-security/github";
        wait_for(
            "Ingestor platform/github-security Ready",
            Duration::from_secs(60),
            || {
                let i = self.kubectl_json(&[
                    "get",
                    "ingestor",
                    "github-security",
                    "-n",
                    "platform",
                    "-o",
                    "json",
                ])?;
                let ready = i["status"]["conditions"]
                    .as_array()
                    .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
                    .cloned()
                    .unwrap_or_default();
                if ready["status"] == "True" && i["status"]["endpoints"][0]["path"] == path {
                    Ok(())
                } else {
                    Err(format!("status: {}", i["status"]))
                }
            },
        );
        let endpoints =
            self.kubectl_json_ok(&["get", "webhookendpoints", "-n", "platform", "-o", "json"]);
        assert!(
            endpoints["items"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|e| e["spec"]["path"] == path),
            "no WebhookEndpoint for {path}: {endpoints}"
        );

        let bundle = self.ca_bundle().expect("the CA bundle");
        let body = delivery::dependabot_alert(7);
        let id = format!("e2e-{}", delivery::now());
        let headers = delivery::github_headers(&body, &id, delivery::GITHUB_SECRET);
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let answer = wait_for(
            "the endpoint served on the ingest port",
            Duration::from_secs(30),
            || {
                let r = self.https_with_body(
                    self.ingest_port,
                    SERVICE_HOST,
                    &bundle,
                    None,
                    "POST",
                    path,
                    &headers,
                    &body,
                )?;
                if r.status == 404 {
                    Err(format!("404: {}", r.body))
                } else {
                    Ok(r)
                }
            },
        );
        assert_eq!(answer.status, 201, "delivery refused: {}", answer.body);
        let out = self.kubectl_ok(&["get", "observations", "-n", "platform"]);
        assert!(
            out.lines().any(|l| {
                let c: Vec<&str> = l.split_whitespace().collect();
                c.get(1..6)
                    == Some(&["github", "security", "high", "vulnerable_dependency", "1"][..])
            }),
            "no Observation of the delivery in:\n{out}"
        );
    }

    /// The certificate serve presents on its secure port to a client trusting `trust`.
    fn served(&self, trust: &str) -> Result<support::tls::Answer, String> {
        self.https(
            self.secure_port,
            SERVICE_HOST,
            trust,
            None,
            "GET",
            "/healthz",
            &[],
        )
    }

    /// Step 5: the serving Secret is deleted; serve issues and serves a new certificate at
    /// once, from the same CA, and the APIService never stops being Available.
    fn serving_rotation(&mut self) {
        let bundle = self.ca_bundle().expect("the CA bundle");
        let before = leaf_serial(&self.served(&bundle).expect("serve answers"));
        let available = self.wait_available(Duration::from_secs(10));
        let since = available["lastTransitionTime"].clone();

        let started = Instant::now();
        self.kubectl_ok(&["delete", "secret", "-n", "zen-system", "zen-watcher-tls"]);
        let after = wait_for(
            "a new serving certificate served",
            Duration::from_secs(30),
            || {
                self.check_alive();
                let serial = leaf_serial(&self.served(&bundle)?);
                if serial == before {
                    Err(format!("still serving {before}"))
                } else {
                    Ok(serial)
                }
            },
        );
        eprintln!(
            "e2e:   new serving certificate {after} served {:.1} s after the Secret was deleted",
            started.elapsed().as_secs_f64()
        );
        let stored = wait_for("the new serving Secret", Duration::from_secs(30), || {
            let secret = self.kubectl_json(&[
                "get",
                "secret",
                "-n",
                "zen-system",
                "zen-watcher-tls",
                "-o",
                "json",
            ])?;
            decode_b64("zen-watcher-tls/tls.crt", &secret["data"]["tls.crt"])
        });
        assert_eq!(
            CertInfo::of_pem(&stored, "zen-watcher-tls")
                .expect("a stored certificate")
                .serial,
            after,
            "the Secret holds another certificate than the one served"
        );
        // Same CA: the bundle did not change, and every caBundle still is it.
        assert_eq!(
            self.ca_bundle().expect("the CA bundle"),
            bundle,
            "the CA changed"
        );
        if let Err(e) = self.bundles_are(&bundle) {
            panic!("{e}");
        }
        // A new connection verified with exactly the APIService's caBundle, as
        // kube-apiserver makes them.
        let api = self.kubectl_json_ok(&["get", "apiservice", API_SERVICE, "-o", "json"]);
        let registered = decode_b64("APIService caBundle", &api["spec"]["caBundle"])
            .expect("the APIService caBundle");
        let r = self
            .served(&registered)
            .expect("the new certificate verifies with the APIService's caBundle");
        assert_eq!(leaf_serial(&r), after);

        let out = self.kubectl_ok(&["get", "observations", "-A"]);
        assert!(out.contains("shell-in-web"), "{out}");
        self.webhooks_answer();
        // Through at least one availability check (every 30 s): Available throughout.
        let until = Instant::now() + Duration::from_secs(35);
        while Instant::now() < until {
            self.check_alive();
            let c = self.available_condition().expect("the Available condition");
            assert!(
                c["status"] == "True" && c["lastTransitionTime"] == since,
                "the APIService did not stay Available across the rotation: {c}"
            );
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// Both webhooks answer through kube-apiserver (server dry runs, nothing stored).
    fn webhooks_answer(&self) {
        // A new name, so the dry run is a create that both webhooks see.
        let mut github = Self::github_ingestor_without_defaults();
        github["metadata"]["name"] = json!("github-security-dry-run");
        let github = github.to_string();
        let out = self.kubectl_stdin(
            &["apply", "--dry-run=server", "-o", "json", "-f", "-"],
            Some(&github),
        );
        assert!(
            out.status.success(),
            "{}",
            self.explain(&["apply", "--dry-run=server"], &out)
        );
        let object: Value = serde_json::from_slice(&out.stdout).expect("dry-run JSON");
        if let Err(e) = Self::defaulted(&object) {
            panic!("mutating webhook: {e}");
        }
        let mut open_door: Value = serde_saphyr::from_str(
            &std::fs::read_to_string(format!("{ROOT}/tests/policy/bad/unauthenticated.yaml"))
                .expect("tests/policy/bad/unauthenticated.yaml"),
        )
        .expect("YAML");
        open_door["metadata"]["namespace"] = json!("security");
        let err = self.apply_refused(&open_door.to_string(), &["--dry-run=server"]);
        assert!(
            err.contains("zen-watcher-require-authentication"),
            "validating webhook: {err}"
        );
    }

    /// Step 6: serve restarted with a `--ca-validity` its CA outlives: the CA is replaced
    /// through the overlap (new CA published, then signing, the old one still trusted and
    /// the new one cross-signed), every caBundle follows, the APIService is Available again
    /// and everything stored is still there.
    fn ca_rotation(&mut self) {
        let old_bundle = self.ca_bundle().expect("the CA bundle");
        let old = split_pem(&old_bundle);
        assert_eq!(old.len(), 1, "one CA before the rotation: {old_bundle}");
        self.stop_serve();
        self.start_serve(&["--cert-validity", "240h", "--ca-validity", "720h"]);
        let bundle = wait_for(
            "a second CA in the bundle, in every caBundle, served",
            Duration::from_secs(120),
            || {
                self.check_alive();
                let bundle = self.ca_bundle()?;
                let cas = split_pem(&bundle);
                if cas.len() != 2 || !cas.contains(&old[0]) {
                    return Err(format!(
                        "the CA bundle has {} certificate(s), old CA {}",
                        cas.len(),
                        if cas.contains(&old[0]) {
                            "kept"
                        } else {
                            "gone"
                        }
                    ));
                }
                self.bundles_are(&bundle)?;
                self.served(&bundle)?;
                Ok(bundle)
            },
        );
        eprintln!(
            "e2e:   CA bundle of two CAs in every caBundle {:.1} s after the restart",
            self.serve_started.elapsed().as_secs_f64()
        );
        let new = split_pem(&bundle)
            .into_iter()
            .find(|c| *c != old[0])
            .expect("the new CA");
        // The leaf is the new CA's (the new CA alone verifies it) and comes with the new CA
        // cross-signed by the old one (clients still holding only the old CA verify it too).
        let by_new = self
            .served(&new)
            .expect("the served certificate verifies with the new CA alone");
        assert_eq!(
            by_new.chain.len(),
            2,
            "leaf and cross-signed CA during the overlap"
        );
        self.served(&old[0])
            .expect("the served chain verifies with the old CA alone");

        let condition = self.wait_available(Duration::from_secs(120));
        eprintln!(
            "e2e:   APIService Available ({}) {:.1} s after the restart",
            condition["reason"].as_str().unwrap_or_default(),
            self.serve_started.elapsed().as_secs_f64()
        );
        let out = wait_for(
            "kubectl get observations -A after the CA rotation",
            Duration::from_secs(60),
            || {
                let out = self.kubectl(&["get", "observations", "-A"]);
                if out.status.success() {
                    Ok(stdout(&out))
                } else {
                    Err(stderr(&out))
                }
            },
        );
        assert!(
            out.contains("shell-in-web") && out.contains("github"),
            "Observations lost across the restart:\n{out}"
        );
        self.webhooks_answer();
    }
}
