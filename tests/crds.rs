//! `manifests/crds/` must hold exactly what `zen-watcher crds` prints.
//!
//! After changing the types, regenerate with `ZEN_UPDATE_CRDS=1 cargo test --test crds`.

use std::{path::Path, process::Command};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/manifests/crds");

fn printed() -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_zen-watcher"))
        .arg("crds")
        .output()
        .expect("run zen-watcher crds");
    assert!(
        out.status.success(),
        "zen-watcher crds failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("CRD YAML is UTF-8")
}

#[test]
fn manifests_match_generated_crds() {
    let update = std::env::var_os("ZEN_UPDATE_CRDS").is_some();
    let mut joined = String::new();
    let mut files = Vec::new();
    for (file, crd) in zen_crds::crd::definitions() {
        let yaml = zen_crds::crd::to_yaml(&crd).expect("render CRD");
        let path = Path::new(DIR).join(&file);
        if update {
            std::fs::write(&path, &yaml).expect("write CRD file");
        }
        let on_disk = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; regenerate with ZEN_UPDATE_CRDS=1 cargo test --test crds",
                path.display()
            )
        });
        assert_eq!(
            on_disk,
            yaml,
            "{} is out of date; regenerate with ZEN_UPDATE_CRDS=1 cargo test --test crds",
            path.display()
        );
        joined.push_str("---\n");
        joined.push_str(&on_disk);
        files.push(file);
    }
    assert_eq!(
        printed(),
        joined,
        "`zen-watcher crds` differs from manifests/crds/"
    );

    let kustomization = std::fs::read_to_string(Path::new(DIR).join("kustomization.yaml"))
        .expect("manifests/crds/kustomization.yaml");
    for file in &files {
        assert!(
            kustomization.contains(file.as_str()),
            "manifests/crds/kustomization.yaml does not list {file}"
        );
    }
}

#[test]
fn printed_crds_parse_back_into_crd_objects() {
    let docs: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(&printed()).expect("CRD YAML parses");
    let names: Vec<String> = docs
        .into_iter()
        .filter(|d| !d.is_null())
        .map(|d| {
            let crd: CustomResourceDefinition =
                serde_json::from_value(d).expect("a CustomResourceDefinition");
            crd.metadata.name.unwrap_or_default()
        })
        .collect();
    assert_eq!(
        names,
        [
            "ingestors.config.zen.watcher.io",
            "ingestorpolicies.config.zen.watcher.io"
        ]
    );
}
