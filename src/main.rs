//! The `zen-watcher` binary: one process for the aggregated API, admission, ingest and
//! certificates. Subcommands only parse flags and hand over to the library crates.

use std::process::ExitCode;

use clap::Parser;

mod certificates;
mod cli;
mod config_dir;
mod dev;
mod kubeconfig;
mod logging;
mod policy_test;
mod process;
mod serve;

/// mimalloc instead of glibc's malloc: the API allocates many small JSON nodes per request, and
/// glibc's per-thread arenas kept far more memory resident after load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    cli.run()
}
