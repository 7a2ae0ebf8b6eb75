//! Every manifest under `examples/` must be accepted by the types behind the CRDs, and a broken
//! one must be reported with its file and field.

use std::path::{Path, PathBuf};

use zen_crds::manifest::{self, Object};

fn example_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "yaml") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("examples"),
        &mut files,
    );
    files.sort();
    files
}

fn load_all() -> Vec<(PathBuf, Object)> {
    example_files()
        .into_iter()
        .flat_map(|file| {
            let objects = manifest::load_file(&file).unwrap_or_else(|e| panic!("{e}"));
            objects.into_iter().map(move |o| (file.clone(), o))
        })
        .collect()
}

#[test]
fn every_example_decodes() {
    let objects = load_all();
    let names = |want: fn(&Object) -> Option<String>| -> Vec<String> {
        let mut v: Vec<String> = objects.iter().filter_map(|(_, o)| want(o)).collect();
        v.sort();
        v
    };
    let ingestors = names(|o| match o {
        Object::Ingestor(i) => Some(format!(
            "{}/{}",
            i.metadata.namespace.as_deref().unwrap_or(""),
            i.metadata.name.as_deref().unwrap_or("")
        )),
        _ => None,
    });
    assert_eq!(
        ingestors,
        [
            "platform/alertmanager",
            "platform/github-security",
            "security/falco",
            "shop/warning-events"
        ]
    );
    let policies = names(|o| match o {
        Object::IngestorPolicy(p) => p.metadata.name.clone(),
        _ => None,
    });
    assert_eq!(policies, ["require-authentication"]);
}

#[test]
fn examples_use_the_documented_features() {
    use zen_crds::ingestor::{AuthType, HmacPreset, SourceType};
    let objects = load_all();
    let ingestor = |name: &str| {
        objects
            .iter()
            .find_map(|(_, o)| match o {
                Object::Ingestor(i) if i.metadata.name.as_deref() == Some(name) => Some(i.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("example Ingestor {name}"))
    };
    let github = ingestor("github-security");
    let auth = github.spec.sources[0].auth.as_ref().expect("github auth");
    assert_eq!(auth.type_, AuthType::Hmac);
    assert_eq!(
        auth.hmac.as_ref().and_then(|h| h.preset),
        Some(HmacPreset::Github)
    );
    assert!(
        auth.replay.is_some(),
        "GitHub deliveries are protected against replay"
    );
    assert_eq!(
        github.spec.dedup.as_ref().and_then(|d| d.window.clone()),
        Some("24h".parse().unwrap())
    );

    let falco = ingestor("falco");
    assert_eq!(
        falco.spec.sources[0].auth.as_ref().map(|a| a.type_),
        Some(AuthType::Mtls)
    );
    let events = ingestor("warning-events");
    assert_eq!(events.spec.sources[0].type_, SourceType::KubernetesEvents);
}

#[test]
fn a_broken_example_names_file_and_field() {
    let original = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/github.yaml");
    let text = std::fs::read_to_string(&original).expect("read example");
    let broken = text.replace("requestsPerSecond: 50", "requestsPerSecond: fifty");
    assert_ne!(broken, text, "the example changed; update this test");
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("github.yaml");
    std::fs::write(&file, broken).expect("write");
    let err = manifest::load_file(&file)
        .expect_err("a string is not a rate")
        .to_string();
    assert!(
        err.starts_with(&format!(
            "{}: document 1 (Ingestor platform/github-security): ",
            file.display()
        )),
        "{err}"
    );
    assert!(
        err.contains("spec.sources[0].rateLimit.requestsPerSecond: invalid type: string \"fifty\""),
        "{err}"
    );
}

#[test]
fn every_cel_expression_in_the_examples_compiles() {
    let mut checked = 0;
    for (file, object) in load_all() {
        // The webhook reads an Ingestor's expressions from its JSON text.
        let text = match &object {
            Object::Ingestor(i) => serde_json::to_string(&i.spec).unwrap(),
            _ => "null".to_owned(),
        };
        let doc = zen_json::Document::parse(&text).unwrap();
        let exprs = match &object {
            Object::Ingestor(_) => zen_admission::expressions::of_ingestor(doc.root()),
            Object::IngestorPolicy(p) => zen_admission::expressions::of_policy(&p.spec),
            Object::Other(_) => continue,
        };
        checked += exprs.len();
        let errors = zen_admission::expressions::compile_all(&exprs);
        assert!(errors.is_empty(), "{}: {errors:?}", file.display());
    }
    assert!(
        checked > 20,
        "only {checked} expressions found in the examples"
    );
}

/// Each sample payload under `examples/payloads/` (in the format its sender documents)
/// goes through its example Ingestor's filter and mapping and yields a valid Observation.
#[test]
fn example_mappings_turn_sample_payloads_into_observations() {
    use zen_ingest::pipeline::{Outcome, Pipeline};
    let objects = load_all();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/payloads");
    let mut samples: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    samples.sort();
    assert!(samples.len() >= 5, "{samples:?}");
    for file in samples {
        let sample: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let want = sample["ingestor"].as_str().unwrap();
        let ingestor = objects
            .iter()
            .find_map(|(_, o)| match o {
                Object::Ingestor(i)
                    if format!(
                        "{}/{}",
                        i.metadata.namespace.as_deref().unwrap_or(""),
                        i.metadata.name.as_deref().unwrap_or("")
                    ) == want =>
                {
                    Some(i.clone())
                }
                _ => None,
            })
            .unwrap_or_else(|| panic!("{}: no example Ingestor {want}", file.display()));
        let pipeline = Pipeline::compile(&ingestor).unwrap();
        let outcome = pipeline
            .run(
                sample["source"].as_str().unwrap(),
                &sample["payload"],
                &sample["headers"],
            )
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let Outcome::Observe { spec, dedup } = outcome else {
            panic!("{}: the filter dropped the sample", file.display());
        };
        for (field, value) in sample["expect"].as_object().unwrap() {
            assert_eq!(&spec[field], value, "{}: spec.{field}", file.display());
        }
        // What the API would accept: the typed spec, and the name patterns of the schema.
        let typed: Result<zen_crds::observation::ObservationSpec, _> =
            serde_json::from_value(spec.clone());
        assert!(typed.is_ok(), "{}: {typed:?}\n{spec}", file.display());
        let source = spec["source"].as_str().unwrap();
        assert!(
            source
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        );
        let event = spec["eventType"].as_str().unwrap();
        assert!(
            event
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        );
        assert!(
            dedup.is_some(),
            "{}: every example deduplicates",
            file.display()
        );
    }
}
