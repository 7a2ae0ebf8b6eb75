//! The policy evaluation counters: every policy of the set has its series from the start, and
//! a review counts one result for each policy it reached, under that policy's name.

use std::{collections::BTreeMap, path::Path, sync::Arc};

use serde_json::Value;
use zen_admission::{Admission, Mode, StaticCluster, metrics::AdmissionMetrics};
use zen_crds::manifest::{self, Object};

const RECORDING: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/testdata/kube-apiserver-1.28/admission/mutate-create-admin.json"
);
const POLICIES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../manifests/policies");

/// `zen_watcher_policy_evaluations_total` by (policy, result).
fn evaluations(registry: &prometheus::Registry) -> BTreeMap<(String, String), u64> {
    let mut out = BTreeMap::new();
    for family in registry.gather() {
        if family.name() != "zen_watcher_policy_evaluations_total" {
            continue;
        }
        for m in family.get_metric() {
            let label = |name: &str| {
                m.get_label()
                    .iter()
                    .find(|l| l.name() == name)
                    .map(|l| l.value().to_owned())
                    .unwrap_or_default()
            };
            out.insert(
                (label("policy"), label("result")),
                m.get_counter().get_value() as u64,
            );
        }
    }
    out
}

#[test]
fn each_policy_reached_counts_one_result() {
    let registry = prometheus::Registry::new();
    let metrics = AdmissionMetrics::register(&registry).unwrap();
    let admission = Admission::new(Arc::new(StaticCluster::default()), Some(metrics)).unwrap();
    let mut policies = Vec::new();
    for file in ["baseline.yaml", "defaults.yaml"] {
        for o in manifest::load_file(&Path::new(POLICIES).join(file)).unwrap() {
            if let Object::IngestorPolicy(p) = o {
                policies.push(*p);
            }
        }
    }
    assert!(admission.set_policies(&policies).is_empty());

    let before = evaluations(&registry);
    assert_eq!(before.len(), policies.len() * 6, "{before:?}");
    assert!(before.values().all(|v| *v == 0));

    let capture: Value =
        serde_json::from_str(&std::fs::read_to_string(RECORDING).unwrap()).unwrap();
    let body = capture["request"]["bodyRaw"].as_str().unwrap();
    let answer: Value =
        serde_json::from_slice(&admission.handle(Mode::Mutate, body.as_bytes()).unwrap()).unwrap();
    assert_eq!(answer["response"]["allowed"], true, "{answer}");

    // Only the policy with mutations runs on the mutating webhook, and it applied.
    let after = evaluations(&registry);
    let counted: Vec<_> = after.iter().filter(|(_, v)| **v > 0).collect();
    assert_eq!(
        counted,
        vec![(
            &("zen-watcher-defaults".to_owned(), "allowed".to_owned()),
            &1
        )]
    );
}
