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

/// A running `zen-watcher dev`, killed on drop.
pub struct DevServer {
    child: Option<Child>,
    pub data_dir: PathBuf,
    pub secure_port: u16,
    pub ingest_port: u16,
    pub metrics_port: u16,
    pub log: PathBuf,
}

impl DevServer {
    /// Starts the server on fresh ports with `data_dir` and waits until it answers.
    pub fn start(data_dir: &Path, extra: &[&str]) -> DevServer {
        let mut server = DevServer {
            child: None,
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
