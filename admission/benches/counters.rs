//! What a review's metric updates cost when both cores answer reviews at once: prometheus'
//! shared counters and histogram against the striped ones admission uses. Each "review" is
//! what a validating review updates: a request counter, the latency histogram and one
//! evaluation counter for each of 20 policies.
//!
//! `cargo bench -p zen-admission --bench counters`

use std::time::Instant;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts};
use zen_admission::metrics::striped;

const POLICIES: usize = 20;
const REVIEWS: u64 = 1_000_000;
const BOUNDS: [f64; 10] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5,
];

/// Nanoseconds per review per thread, with `threads` threads updating the same series.
fn run(threads: usize, review: &(dyn Fn() + Sync)) -> f64 {
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                for _ in 0..REVIEWS {
                    review();
                }
            });
        }
    });
    start.elapsed().as_nanos() as f64 / REVIEWS as f64
}

fn main() {
    if std::env::args().any(|a| a == "--test") {
        return;
    }
    let requests = IntCounterVec::new(Opts::new("r", "r"), &["webhook"]).unwrap();
    let latency = HistogramVec::new(
        HistogramOpts::new("l", "l").buckets(BOUNDS.to_vec()),
        &["webhook"],
    )
    .unwrap();
    let policies = IntCounterVec::new(Opts::new("p", "p"), &["policy"]).unwrap();
    let shared = (
        requests.with_label_values(&["validate"]),
        latency.with_label_values(&["validate"]),
        (0..POLICIES)
            .map(|i| policies.with_label_values(&[&format!("p{i}")]))
            .collect::<Vec<_>>(),
    );
    let requests = striped::CounterVec::new("r", "r", ["webhook"]).unwrap();
    let latency = striped::HistogramVec::new("l", "l", ["webhook"], &BOUNDS).unwrap();
    let policies = striped::CounterVec::new("p", "p", ["policy"]).unwrap();
    let own = (
        requests.with_label_values(["validate"]),
        latency.with_label_values(["validate"]),
        (0..POLICIES)
            .map(|i| policies.with_label_values([&format!("p{i}")]))
            .collect::<Vec<_>>(),
    );
    let shared_review = || {
        shared.0.inc();
        shared.1.observe(0.00005);
        shared.2.iter().for_each(|c| c.inc());
    };
    let striped_review = || {
        own.0.inc();
        own.1.observe(0.00005);
        own.2.iter().for_each(|c| c.inc());
    };
    println!("| threads | prometheus' counters, ns per review | striped, ns per review | ratio |");
    println!("|---|---|---|---|");
    for threads in [1, 2] {
        let a = run(threads, &shared_review);
        let b = run(threads, &striped_review);
        println!("| {threads} | {a:.0} | {b:.0} | {:.2} |", b / a);
    }
}
