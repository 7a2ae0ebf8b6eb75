//! Admission webhook benchmark (`cargo bench --bench admission`); being written.
fn main() {}
