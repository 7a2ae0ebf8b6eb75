//! Reading the recorded AdmissionReviews: `Document::parse` against `serde_json::Value`, in
//! the same run, rounds alternating (docs/BENCHMARKS.md). `cargo bench -p zen-json --bench parse`

use std::{hint::black_box, path::Path, time::Instant};

use serde_json::Value as Json;
use zen_json::Document;

const ROUNDS: usize = 5;
const ITERATIONS: usize = 2000;

/// Paths read from every review, as policies read them.
const PATHS: [&[&str]; 4] = [
    &["request", "uid"],
    &["request", "object", "metadata", "name"],
    &["request", "object", "spec", "sources"],
    &["request", "userInfo", "username"],
];

fn bodies() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/testdata/kube-apiserver-1.28/admission");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("recordings") {
        let path = entry.expect("entry").path();
        let capture: Json = serde_json::from_str(&std::fs::read_to_string(&path).expect("read"))
            .expect("a recording is JSON");
        if let Some(body) = capture["request"]["bodyRaw"].as_str()
            && body.starts_with('{')
        {
            out.push(body.to_owned());
        }
    }
    out
}

/// Nanoseconds per body for `f` over all bodies.
fn time(bodies: &[String], mut f: impl FnMut(&str)) -> f64 {
    let start = Instant::now();
    for _ in 0..ITERATIONS {
        for body in bodies {
            f(body);
        }
    }
    start.elapsed().as_nanos() as f64 / (ITERATIONS * bodies.len()) as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let bodies = bodies();
    assert!(!bodies.is_empty(), "no recorded reviews");
    let bytes: usize = bodies.iter().map(String::len).sum();
    let (mut serde, mut tape, mut serde_paths, mut tape_paths) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let serde_docs: Vec<Json> = bodies
        .iter()
        .map(|b| serde_json::from_str(b).expect("JSON"))
        .collect();
    let tape_docs: Vec<Document<'_>> = bodies
        .iter()
        .map(|b| Document::parse(b).expect("JSON"))
        .collect();
    for _ in 0..ROUNDS {
        serde.push(time(&bodies, |b| {
            black_box(serde_json::from_str::<Json>(b).expect("JSON"));
        }));
        tape.push(time(&bodies, |b| {
            black_box(Document::parse(b).expect("JSON"));
        }));
        let start = Instant::now();
        for _ in 0..ITERATIONS {
            for doc in &serde_docs {
                for path in PATHS {
                    black_box(path.iter().try_fold(doc, |v, k| v.get(k)));
                }
            }
        }
        serde_paths.push(
            start.elapsed().as_nanos() as f64
                / (ITERATIONS * serde_docs.len() * PATHS.len()) as f64,
        );
        let start = Instant::now();
        for _ in 0..ITERATIONS {
            for doc in &tape_docs {
                for path in PATHS {
                    black_box(path.iter().try_fold(doc.root(), |v, k| v.get(k)));
                }
            }
        }
        tape_paths.push(
            start.elapsed().as_nanos() as f64 / (ITERATIONS * tape_docs.len() * PATHS.len()) as f64,
        );
    }
    let (serde, tape) = (median(serde), median(tape));
    let (serde_paths, tape_paths) = (median(serde_paths), median(tape_paths));
    println!(
        "{} recorded reviews, {} bytes on average; medians of {ROUNDS} rounds",
        bodies.len(),
        bytes / bodies.len()
    );
    println!(
        "parse and drop: serde_json::Value {serde:.0} ns, Document {tape:.0} ns (ratio {:.2})",
        tape / serde
    );
    println!(
        "a path of 2 to 4 keys, {} paths averaged: serde_json::Value {serde_paths:.1} ns, Document {tape_paths:.1} ns (ratio {:.2})",
        PATHS.len(),
        tape_paths / serde_paths
    );
}
