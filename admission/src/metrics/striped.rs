//! Counters and histograms that threads update at once without passing a cache line between
//! cores: each thread adds to a stripe of its own, and a scrape sums the stripes. A review
//! counts once per policy it evaluates; with prometheus' shared atomics each of those twenty
//! increments moved a cache line from the other core, several times the cost of the
//! increment itself.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed},
    },
};

use prometheus::{
    core::{Collector, Desc},
    proto::{self, MetricFamily, MetricType},
};

/// Stripes per series: threads beyond this many share stripes, which stays correct.
const STRIPES: usize = 8;

/// Most bucket bounds of a histogram, so that a stripe's buckets lie inline in it.
pub const MAX_BOUNDS: usize = 15;

/// One stripe: two cache lines of its own (the line prefetcher pulls lines in pairs).
#[repr(align(128))]
#[derive(Default)]
struct Stripe<T>(T);

/// The stripe of the calling thread, handed out in the order threads first count.
fn stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: usize = NEXT.fetch_add(1, Relaxed) % STRIPES;
    }
    STRIPE.with(|s| *s)
}

/// A monotonic counter.
#[derive(Clone, Default)]
pub struct Counter(Arc<[Stripe<AtomicU64>; STRIPES]>);

impl Counter {
    pub fn inc(&self) {
        if let Some(s) = self.0.get(stripe()) {
            s.0.fetch_add(1, Relaxed);
        }
    }

    pub fn get(&self) -> u64 {
        self.0.iter().map(|s| s.0.load(Relaxed)).sum()
    }
}

/// One stripe of a histogram: a count per bucket (the last for `+Inf`) and the sum.
#[derive(Default)]
struct HistogramStripe {
    buckets: [AtomicU64; MAX_BOUNDS + 1],
    /// The sum's `f64` bits; only this stripe's threads add to it.
    sum: AtomicU64,
}

/// A histogram with fixed bucket bounds.
#[derive(Clone)]
pub struct Histogram {
    bounds: Arc<[f64]>,
    stripes: Arc<[Stripe<HistogramStripe>; STRIPES]>,
}

impl Histogram {
    pub fn observe(&self, value: f64) {
        let Some(s) = self.stripes.get(stripe()) else {
            return;
        };
        let bucket = self.bounds.partition_point(|&b| b < value);
        if let Some(b) = s.0.buckets.get(bucket) {
            b.fetch_add(1, Relaxed);
        }
        // Contended only when more threads than stripes observe at once.
        let _ = s.0.sum.fetch_update(Relaxed, Relaxed, |bits| {
            Some((f64::from_bits(bits) + value).to_bits())
        });
    }

    /// Cumulative counts per bound, the total count and the sum.
    fn snapshot(&self) -> (Vec<u64>, u64, f64) {
        let mut counts = [0u64; MAX_BOUNDS + 1];
        let mut sum = 0.0;
        for s in self.stripes.iter() {
            for (total, b) in counts.iter_mut().zip(&s.0.buckets) {
                *total += b.load(Relaxed);
            }
            sum += f64::from_bits(s.0.sum.load(Relaxed));
        }
        let mut cumulative = Vec::with_capacity(self.bounds.len());
        let mut running = 0;
        for count in counts.iter().take(self.bounds.len()) {
            running += count;
            cumulative.push(running);
        }
        let total = running + counts.get(self.bounds.len()).copied().unwrap_or(0);
        (cumulative, total, sum)
    }
}

/// The series of one metric family by their `N` label values.
struct Family<const N: usize, M> {
    desc: Desc,
    series: Mutex<BTreeMap<[String; N], M>>,
}

impl<const N: usize, M: Clone> Family<N, M> {
    fn new(name: &str, help: &str, labels: [&str; N]) -> prometheus::Result<Self> {
        let labels = labels.iter().map(|l| (*l).to_owned()).collect();
        Ok(Self {
            desc: Desc::new(name.to_owned(), help.to_owned(), labels, Default::default())?,
            series: Mutex::default(),
        })
    }

    fn get_or_insert(&self, values: [&str; N], new: impl FnOnce() -> M) -> M {
        let key = values.map(str::to_owned);
        let mut series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        series.entry(key).or_insert_with(new).clone()
    }

    /// The family with one metric per series, each made by `metric`.
    fn collect(&self, kind: MetricType, metric: impl Fn(&M, &mut proto::Metric)) -> MetricFamily {
        let series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        let metrics = series
            .iter()
            .map(|(values, m)| {
                // Sorted by name, as prometheus' own metrics give them.
                let mut labels: Vec<proto::LabelPair> = self
                    .desc
                    .variable_labels
                    .iter()
                    .zip(values)
                    .map(|(name, value)| {
                        let mut pair = proto::LabelPair::default();
                        pair.set_name(name.clone());
                        pair.set_value(value.clone());
                        pair
                    })
                    .collect();
                labels.sort_by(|a, b| a.name().cmp(b.name()));
                let mut out = proto::Metric::from_label(labels);
                metric(m, &mut out);
                out
            })
            .collect();
        let mut family = MetricFamily::default();
        family.set_name(self.desc.fq_name.clone());
        family.set_help(self.desc.help.clone());
        family.set_field_type(kind);
        family.set_metric(metrics);
        family
    }
}

/// Counters by `N` labels, registered with a prometheus `Registry` like its `IntCounterVec`.
#[derive(Clone)]
pub struct CounterVec<const N: usize>(Arc<Family<N, Counter>>);

impl<const N: usize> CounterVec<N> {
    pub fn new(name: &str, help: &str, labels: [&str; N]) -> prometheus::Result<Self> {
        Ok(Self(Arc::new(Family::new(name, help, labels)?)))
    }

    pub fn with_label_values(&self, values: [&str; N]) -> Counter {
        self.0.get_or_insert(values, Counter::default)
    }
}

impl<const N: usize> Collector for CounterVec<N> {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.0.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        vec![self.0.collect(MetricType::COUNTER, |c, out| {
            let mut counter = proto::Counter::default();
            counter.set_value(c.get() as f64);
            out.set_counter(counter);
        })]
    }
}

/// Histograms by `N` labels, all with the same bucket bounds.
#[derive(Clone)]
pub struct HistogramVec<const N: usize> {
    family: Arc<Family<N, Histogram>>,
    bounds: Arc<[f64]>,
}

impl<const N: usize> HistogramVec<N> {
    /// `bounds` ascending, at most [`MAX_BOUNDS`] of them.
    pub fn new(
        name: &str,
        help: &str,
        labels: [&str; N],
        bounds: &[f64],
    ) -> prometheus::Result<Self> {
        if bounds.len() > MAX_BOUNDS || !bounds.is_sorted_by(|a, b| a < b) {
            return Err(prometheus::Error::Msg(format!(
                "{name}: at most {MAX_BOUNDS} ascending bucket bounds, not {bounds:?}"
            )));
        }
        Ok(Self {
            family: Arc::new(Family::new(name, help, labels)?),
            bounds: bounds.into(),
        })
    }

    pub fn with_label_values(&self, values: [&str; N]) -> Histogram {
        self.family.get_or_insert(values, || Histogram {
            bounds: self.bounds.clone(),
            stripes: Arc::default(),
        })
    }
}

impl<const N: usize> Collector for HistogramVec<N> {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.family.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        vec![self.family.collect(MetricType::HISTOGRAM, |h, out| {
            let (cumulative, count, sum) = h.snapshot();
            let buckets = h
                .bounds
                .iter()
                .zip(cumulative)
                .map(|(&bound, count)| {
                    let mut b = proto::Bucket::default();
                    b.set_upper_bound(bound);
                    b.set_cumulative_count(count);
                    b
                })
                .collect();
            let mut histogram = proto::Histogram::default();
            histogram.set_sample_count(count);
            histogram.set_sample_sum(sum);
            histogram.set_bucket(buckets);
            out.set_histogram(histogram);
        })]
    }
}

#[cfg(test)]
mod tests {
    use prometheus::{Encoder, Registry, TextEncoder};

    use super::*;

    fn exposition(registry: &Registry) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&registry.gather(), &mut out)
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    /// Counts from many threads add up, per series, in the text format prometheus' own
    /// counters give.
    #[test]
    fn counts_from_many_threads_add_up() {
        let registry = Registry::new();
        let vec = CounterVec::new("test_total", "Test.", ["policy", "result"]).unwrap();
        registry.register(Box::new(vec.clone())).unwrap();
        let a = vec.with_label_values(["a", "allowed"]);
        std::thread::scope(|s| {
            for _ in 0..(2 * STRIPES + 3) {
                s.spawn(|| {
                    for _ in 0..1000 {
                        a.inc();
                    }
                });
            }
        });
        vec.with_label_values(["b", "denied"]).inc();
        assert_eq!(a.get(), (2 * STRIPES as u64 + 3) * 1000);
        // The same labels give the same series.
        assert_eq!(vec.with_label_values(["a", "allowed"]).get(), a.get());
        assert_eq!(
            exposition(&registry),
            "# HELP test_total Test.\n# TYPE test_total counter\n\
             test_total{policy=\"a\",result=\"allowed\"} 19000\n\
             test_total{policy=\"b\",result=\"denied\"} 1\n"
        );
    }

    #[test]
    fn histograms_bucket_as_prometheus_does() {
        let registry = Registry::new();
        let vec = HistogramVec::new("test_seconds", "Test.", ["op"], &[0.125, 1.0]).unwrap();
        registry.register(Box::new(vec.clone())).unwrap();
        let h = vec.with_label_values(["create"]);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    // On a bound counts in its bucket, as prometheus' `le` says.
                    for v in [0.0625, 0.125, 0.5, 2.0] {
                        h.observe(v);
                    }
                });
            }
        });
        assert_eq!(
            exposition(&registry),
            "# HELP test_seconds Test.\n# TYPE test_seconds histogram\n\
             test_seconds_bucket{op=\"create\",le=\"0.125\"} 8\n\
             test_seconds_bucket{op=\"create\",le=\"1\"} 12\n\
             test_seconds_bucket{op=\"create\",le=\"+Inf\"} 16\n\
             test_seconds_sum{op=\"create\"} 10.75\n\
             test_seconds_count{op=\"create\"} 16\n"
        );
    }

    #[test]
    fn too_many_or_unordered_bounds_are_refused() {
        let many: Vec<f64> = (0..=MAX_BOUNDS).map(|i| i as f64).collect();
        assert!(HistogramVec::new("a", "A.", ["x"], &many).is_err());
        assert!(HistogramVec::new("b", "B.", ["x"], &[1.0, 0.5]).is_err());
        assert!(HistogramVec::new("c", "C.", ["x"], &[0.5, 1.0]).is_ok());
    }
}
