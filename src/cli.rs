//! Command-line interface (DESIGN.md, "The binary").

use std::{io::Write, path::PathBuf, process::ExitCode};

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::logging::LogFormat;

/// Exit code for "could not do what was asked" (bad input, missing capability).
const EXIT_ERROR: u8 = 2;

/// Security, compliance and operations signals as first-class Kubernetes resources.
#[derive(Parser, Debug)]
#[command(name = "zen-watcher", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// In-cluster mode: aggregated API, admission webhook and ingest listener, configured from
    /// the cluster.
    Serve(ServeArgs),
    /// Standalone mode, no cluster needed: embedded store, own CA, admin kubeconfig.
    Dev(DevArgs),
    /// Print the CustomResourceDefinitions generated from the Rust types.
    Crds,
    /// Offline policy checks.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

/// Flags shared by `serve` and `dev`.
#[derive(Args, Debug)]
struct ServerArgs {
    /// Port of the aggregated API, admission webhook and health endpoints (TLS).
    #[arg(long, env = "ZEN_SECURE_PORT", default_value_t = 8443)]
    secure_port: u16,
    /// Port of the external webhook listener (TLS).
    #[arg(long, env = "ZEN_INGEST_PORT", default_value_t = 9443)]
    ingest_port: u16,
    /// Port of the plain-HTTP Prometheus `/metrics` endpoint.
    #[arg(long, env = "ZEN_METRICS_PORT", default_value_t = 9090)]
    metrics_port: u16,
    /// Where Observations live: `redb:PATH` (embedded) or `etcd:http://HOST:PORT[,...]`.
    #[arg(long, env = "ZEN_STORE")]
    store: Option<String>,
    /// Key prefix in etcd (`--store etcd:...`); installations sharing an etcd need their own.
    #[arg(long, env = "ZEN_ETCD_PREFIX")]
    etcd_prefix: Option<String>,
    /// CA bundle that etcd's serving certificate is verified with (https endpoints).
    #[arg(long, env = "ZEN_ETCD_CAFILE")]
    etcd_cafile: Option<PathBuf>,
    /// Client certificate presented to etcd.
    #[arg(long, env = "ZEN_ETCD_CERTFILE")]
    etcd_certfile: Option<PathBuf>,
    /// Key of the client certificate presented to etcd.
    #[arg(long, env = "ZEN_ETCD_KEYFILE")]
    etcd_keyfile: Option<PathBuf>,
    /// Use mounted certificates (tls.crt, tls.key, ca.crt) instead of self-managed ones;
    /// re-read when the files change.
    #[arg(long, env = "ZEN_CERT_DIR")]
    cert_dir: Option<PathBuf>,
    /// The ingest port's own certificate directory (e.g. a publicly trusted certificate);
    /// without it the ingest port serves the secure port's certificate.
    #[arg(long, env = "ZEN_INGEST_CERT_DIR")]
    ingest_cert_dir: Option<PathBuf>,
    /// Lifetime of self-managed serving (and dev client) certificates; renewed at two thirds.
    #[arg(long, env = "ZEN_CERT_VALIDITY", default_value = "2160h")]
    cert_validity: zen_crds::duration::Duration,
    /// Lifetime of the self-managed CA; rotated at two thirds, with an overlap of one
    /// serving-certificate lifetime during which both CAs are trusted.
    #[arg(long, env = "ZEN_CA_VALIDITY", default_value = "43800h")]
    ca_validity: zen_crds::duration::Duration,
    /// Deliveries per second the ingest port takes from all senders together (each
    /// endpoint's own limit applies too); beyond it, 429 with Retry-After.
    #[arg(long, env = "ZEN_INGEST_RATE_LIMIT", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    ingest_rate_limit: u32,
    /// Log format.
    #[arg(long, env = "ZEN_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

impl ServerArgs {
    fn ingest_limits(&self) -> zen_ingest::service::Limits {
        zen_ingest::service::Limits {
            rate: self.ingest_rate_limit,
            ..Default::default()
        }
    }

    fn store_options(&self) -> crate::process::StoreOptions {
        crate::process::StoreOptions {
            spec: self.store.clone(),
            etcd_prefix: self.etcd_prefix.clone(),
            etcd_cafile: self.etcd_cafile.clone(),
            etcd_certfile: self.etcd_certfile.clone(),
            etcd_keyfile: self.etcd_keyfile.clone(),
        }
    }
}

#[derive(Args, Debug)]
struct ServeArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Kubeconfig to reach the cluster from outside it (default: in-cluster configuration).
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Namespace of zen-watcher's Service, Secrets and Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "zen-system")]
    namespace: String,
    /// Name of zen-watcher's Service (the names its serving certificate covers).
    #[arg(long, env = "ZEN_SERVICE_NAME", default_value = "zen-watcher")]
    service_name: String,
    /// Address the listeners bind to.
    #[arg(long, env = "ZEN_BIND_ADDRESS", default_value = "0.0.0.0")]
    bind_address: std::net::IpAddr,
}

#[derive(Args, Debug)]
struct DevArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Directory for the embedded store, the CA and the admin kubeconfig.
    #[arg(long, env = "ZEN_DATA_DIR", default_value = "./zen-data")]
    data_dir: PathBuf,
    /// Directory of YAML files with Ingestors, IngestorPolicies, Secrets and Namespaces,
    /// re-read when they change.
    #[arg(long, env = "ZEN_CONFIG_DIR")]
    config_dir: Option<PathBuf>,
    /// Address the listeners bind to (loopback by default: dev mode is for this machine).
    #[arg(long, env = "ZEN_BIND_ADDRESS", default_value = "127.0.0.1")]
    bind_address: std::net::IpAddr,
}

#[derive(Subcommand, Debug)]
enum PolicyCommand {
    /// Run the admission checks of an Ingestor file against policies; exit 0 allowed,
    /// 1 denied, 2 error.
    Test(PolicyTestArgs),
}

#[derive(Args, Debug)]
struct PolicyTestArgs {
    /// The Ingestor manifest to check.
    #[arg(short = 'f', long = "filename")]
    file: PathBuf,
    /// Directory of IngestorPolicy manifests.
    #[arg(long)]
    policies: Option<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Text)]
    output: OutputFormat,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum OutputFormat {
    Text,
    Json,
}

impl Cli {
    pub fn run(self) -> ExitCode {
        match self.command {
            Command::Crds => print_crds(),
            Command::Serve(args) => {
                crate::logging::init(args.server.log_format);
                run_serve(args)
            }
            Command::Dev(args) => {
                crate::logging::init(args.server.log_format);
                run_dev(args)
            }
            Command::Policy(PolicyCommand::Test(args)) => policy_test(args),
        }
    }
}

/// Exit code of `policy test` when an Ingestor is denied.
const EXIT_DENIED: u8 = 1;

fn policy_test(args: PolicyTestArgs) -> ExitCode {
    let verdicts = match crate::policy_test::run(&args.file, args.policies.as_deref()) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let text = match args.output {
        OutputFormat::Text => crate::policy_test::print_text(&verdicts),
        OutputFormat::Json => serde_json::to_string_pretty(&verdicts).unwrap_or_default() + "\n",
    };
    let mut out = std::io::stdout().lock();
    if out
        .write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .is_err()
    {
        return ExitCode::from(EXIT_ERROR);
    }
    if verdicts.iter().all(|v| v.allowed) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_DENIED)
    }
}

/// `--cert-validity` and `--ca-validity`, checked.
fn validities(server: &ServerArgs) -> Option<(std::time::Duration, std::time::Duration)> {
    let (cert, ca) = (server.cert_validity.as_std(), server.ca_validity.as_std());
    if cert < std::time::Duration::from_secs(3) || ca < 3 * cert {
        eprintln!(
            "error: --cert-validity must be at least 3s and --ca-validity at least three times --cert-validity"
        );
        return None;
    }
    Some((cert, ca))
}

/// Runs a server future on a multi-threaded runtime; errors are printed for humans.
fn block_on(
    f: impl std::future::Future<Output = Result<(), crate::process::RunError>>,
) -> ExitCode {
    // Threads with room for CEL evaluation (`zen_cel::with_stack`), so evaluating does not
    // map a fresh stack segment per review or delivery; untouched stack costs no memory.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(2 * zen_cel::EVAL_STACK + 1024 * 1024)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    match runtime.block_on(f) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn run_serve(args: ServeArgs) -> ExitCode {
    let Some((cert_validity, ca_validity)) = validities(&args.server) else {
        return ExitCode::from(EXIT_ERROR);
    };
    let store = args.server.store_options();
    let ingest = args.server.ingest_limits();
    block_on(crate::serve::run(crate::serve::ServeConfig {
        kubeconfig: args.kubeconfig,
        namespace: args.namespace,
        service: args.service_name,
        store,
        cert_dir: args.server.cert_dir,
        ingest_cert_dir: args.server.ingest_cert_dir,
        cert_validity,
        ca_validity,
        ports: crate::process::Ports {
            bind: args.bind_address,
            secure: args.server.secure_port,
            ingest: args.server.ingest_port,
            metrics: args.server.metrics_port,
        },
        ingest,
    }))
}

fn run_dev(args: DevArgs) -> ExitCode {
    let Some((cert_validity, ca_validity)) = validities(&args.server) else {
        return ExitCode::from(EXIT_ERROR);
    };
    let store = args.server.store_options();
    let ingest = args.server.ingest_limits();
    let config = crate::dev::DevConfig {
        config_dir: args.config_dir,
        certs: crate::certificates::CertOptions {
            cert_dir: args.server.cert_dir,
            ingest_cert_dir: args.server.ingest_cert_dir,
            cert_validity,
            ca_validity,
        },
        data_dir: args.data_dir,
        store,
        ports: crate::process::Ports {
            bind: args.bind_address,
            secure: args.server.secure_port,
            ingest: args.server.ingest_port,
            metrics: args.server.metrics_port,
        },
        ingest,
    };
    block_on(crate::dev::run(config))
}

fn print_crds() -> ExitCode {
    match zen_crds::crd::all_yaml() {
        Ok(yaml) => {
            let mut out = std::io::stdout().lock();
            if out
                .write_all(yaml.as_bytes())
                .and_then(|()| out.flush())
                .is_err()
            {
                return ExitCode::from(EXIT_ERROR);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: rendering the CRDs failed: {e}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}
