//! `kubectl` against `zen-watcher dev`: Observations behave like a built-in resource.
//! Each step is one of issue 3's done-criteria; they share one server to keep the suite fast.

mod support;

use support::{DevServer, expect_line};

fn observation(name: &str, severity: &str, source: &str) -> String {
    format!(
        r#"apiVersion: zen.watcher.io/v1alpha1
kind: Observation
metadata:
  name: {name}
  namespace: default
  labels:
    team: payments
spec:
  source: {source}
  category: security
  severity: {severity}
  eventType: runtime_alert
  title: Shell spawned in container {name}
  resource:
    apiVersion: v1
    kind: Pod
    name: web-{name}
    namespace: default
  ingestor: falco
"#
    )
}

/// The line of `out` that starts with `name`.
fn row<'a>(out: &'a str, name: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("no {name} in:\n{out}"))
}

fn columns(header: &str) -> Vec<String> {
    header.split_whitespace().map(str::to_owned).collect()
}

#[test]
fn kubectl_treats_observations_as_built_in() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let mut server = DevServer::start(&data, &[]);

    // Identity: the admin certificate's CN is the user, its O a group.
    let out = server.kubectl_ok(&["auth", "whoami", "-o", "json"]);
    let review: serde_json::Value = serde_json::from_str(&out).expect("whoami JSON");
    assert_eq!(
        review["status"]["userInfo"]["username"], "zen-admin",
        "{out}"
    );
    assert_eq!(
        review["status"]["userInfo"]["groups"],
        serde_json::json!(["system:masters", "system:authenticated"]),
        "{out}"
    );
    let out = server.kubectl_ok(&["auth", "whoami"]);
    assert!(
        out.contains("zen-admin") && out.contains("system:masters"),
        "{out}"
    );

    // Discovery.
    let out = server.kubectl_ok(&["api-resources", "--api-group=zen.watcher.io", "-o", "wide"]);
    let line = row(&out, "observations");
    assert_eq!(
        columns(line)[..5],
        [
            "observations",
            "obs",
            "zen.watcher.io/v1alpha1",
            "true",
            "Observation"
        ],
        "{out}"
    );
    assert!(
        out.lines().any(|l| l.starts_with("webhookendpoints")),
        "{out}"
    );

    // apply creates, apply again configures.
    assert_eq!(
        server.kubectl_apply(&observation("shell-1", "critical", "falco")),
        "observation.zen.watcher.io/shell-1 created"
    );
    let changed =
        observation("shell-1", "critical", "falco").replace("Shell spawned", "A shell spawned");
    assert_eq!(
        server.kubectl_apply(&changed),
        "observation.zen.watcher.io/shell-1 configured"
    );

    // create, and a watch that sees later creates and deletes.
    let (mut watch, lines) = server.kubectl_spawn(&["get", "observations", "-w", "--no-headers"]);
    expect_line(&lines, "shell-1 in the initial list", |l| {
        l.starts_with("shell-1 ")
    });
    let dir_file = dir.path().join("obs2.yaml");
    std::fs::write(&dir_file, observation("scan-2", "high", "trivy")).expect("write manifest");
    let out = server.kubectl_ok(&["create", "-f", dir_file.to_str().expect("utf-8 path")]);
    assert_eq!(out.trim(), "observation.zen.watcher.io/scan-2 created");
    expect_line(&lines, "scan-2 created", |l| l.starts_with("scan-2 "));

    // Table columns, wide columns, YAML.
    let out = server.kubectl_ok(&["get", "observations"]);
    let mut rows = out.lines();
    assert_eq!(
        columns(rows.next().unwrap_or_default()),
        [
            "NAME", "SOURCE", "CATEGORY", "SEVERITY", "TYPE", "COUNT", "AGE"
        ],
        "{out}"
    );
    let shell = row(&out, "shell-1");
    assert_eq!(
        columns(shell)[..6],
        [
            "shell-1",
            "falco",
            "security",
            "critical",
            "runtime_alert",
            "1"
        ],
        "{out}"
    );
    let out = server.kubectl_ok(&["get", "obs", "-o", "wide"]);
    assert_eq!(
        columns(out.lines().next().unwrap_or_default()),
        [
            "NAME", "SOURCE", "CATEGORY", "SEVERITY", "TYPE", "COUNT", "AGE", "TITLE", "RESOURCE",
            "INGESTOR"
        ],
        "{out}"
    );
    let out = server.kubectl_ok(&["get", "obs", "shell-1", "-o", "yaml"]);
    for want in [
        "kind: Observation",
        "severity: critical",
        "title: A shell spawned in container shell-1",
        "uid:",
        "resourceVersion:",
        "count: 1",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }

    // label, merge patch, JSON patch.
    server.kubectl_ok(&["label", "obs", "shell-1", "triaged=yes"]);
    server.kubectl_ok(&[
        "patch",
        "obs",
        "shell-1",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"severity":"high"}}"#,
    ]);
    server.kubectl_ok(&[
        "patch",
        "obs",
        "shell-1",
        "--type",
        "json",
        "-p",
        r#"[{"op":"replace","path":"/spec/eventType","value":"shell_spawned"}]"#,
    ]);
    let out = server.kubectl_ok(&[
        "get",
        "obs",
        "shell-1",
        "-o",
        "jsonpath={.metadata.labels.triaged} {.spec.severity} {.spec.eventType}",
    ]);
    assert_eq!(out, "yes high shell_spawned");

    // Selectors.
    for i in 0..5 {
        std::fs::write(
            &dir_file,
            observation(
                &format!("bulk-{i}"),
                if i % 2 == 0 { "critical" } else { "low" },
                "trivy",
            ),
        )
        .expect("write manifest");
        server.kubectl_ok(&["create", "-f", dir_file.to_str().expect("utf-8 path")]);
    }
    let out = server.kubectl_ok(&[
        "get",
        "obs",
        "--field-selector",
        "spec.severity=critical",
        "-o",
        "name",
    ]);
    let mut names: Vec<&str> = out.lines().collect();
    names.sort();
    assert_eq!(
        names,
        [
            "observation.zen.watcher.io/bulk-0",
            "observation.zen.watcher.io/bulk-2",
            "observation.zen.watcher.io/bulk-4"
        ]
    );
    let out = server.kubectl_ok(&["get", "obs", "-l", "triaged=yes", "-o", "name"]);
    assert_eq!(out.trim(), "observation.zen.watcher.io/shell-1");
    let out = server.kubectl(&["get", "obs", "--field-selector", "spec.title=x"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("field label not supported: spec.title"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Pagination: kubectl follows `continue` across pages of 2.
    let out = server.kubectl(&["get", "obs", "--chunk-size=2", "-o", "name", "-v=6"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 7);
    let log = String::from_utf8_lossy(&out.stderr);
    let pages = log
        .lines()
        .filter(|l| l.contains("GET") && l.contains("limit=2"))
        .count();
    assert!(
        pages >= 4 && log.contains("continue="),
        "expected 4 pages of 2, kubectl said:\n{log}"
    );

    // explain from the OpenAPI v3 document.
    let out = server.kubectl_ok(&["explain", "observations.spec.severity"]);
    assert!(out.contains("Urgency") || out.contains("urgent"), "{out}");

    // An invalid object is refused, naming the field.
    let out = server.kubectl_stdin(
        &["apply", "-f", "-"],
        &observation("bad", "CRITICAL", "falco"),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("spec.severity") && err.contains("Unsupported value: \"CRITICAL\""),
        "{err}"
    );

    // delete, seen by the watch.
    let out = server.kubectl_ok(&["delete", "obs", "scan-2"]);
    assert_eq!(out.trim(), "observation.zen.watcher.io \"scan-2\" deleted");
    let _ = watch.kill();
    let _ = watch.wait();

    // Everything and the resourceVersion order survive a hard restart.
    let before = server.kubectl_ok(&[
        "get",
        "obs",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name}={.metadata.resourceVersion} {end}",
    ]);
    server.kill_and_restart(&[]);
    let after = server.kubectl_ok(&[
        "get",
        "obs",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name}={.metadata.resourceVersion} {end}",
    ]);
    assert_eq!(before, after);
    server.kubectl_ok(&["label", "obs", "bulk-0", "after=restart"]);
    let rv = |name: &str| -> u64 {
        server
            .kubectl_ok(&[
                "get",
                "obs",
                name,
                "-o",
                "jsonpath={.metadata.resourceVersion}",
            ])
            .parse()
            .expect("numeric resourceVersion")
    };
    let max_before = before
        .split_whitespace()
        .filter_map(|kv| kv.split_once('=').and_then(|(_, v)| v.parse::<u64>().ok()))
        .max()
        .expect("some objects");
    assert!(
        rv("bulk-0") > max_before,
        "resourceVersions keep increasing after a restart"
    );
}
