//! The `zen-watcher` binary: one process for the aggregated API, admission, ingest and
//! certificates. Subcommands only parse flags and hand over to the library crates.

use std::process::ExitCode;

use clap::Parser;

mod cli;
mod dev;
mod kubeconfig;
mod logging;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    cli.run()
}
