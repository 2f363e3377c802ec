//! `paddock`: parse flags, load and validate config, set up logging, run the server.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use paddock_config::{Config, Overrides};
use paddock_router::cli;
use paddock_router::phase::{Phases, Stop};

/// Exit code for a configuration error (EX_USAGE-like, as sysexits' EX_CONFIG is 78).
const EXIT_CONFIG: u8 = 64;

#[derive(Parser)]
#[command(name = "paddock", version, about = "Multi-tenant front door for WSGI applications")]
struct Cli {
    /// Log format: `plain` or `json`.
    #[arg(long, global = true, default_value = "plain")]
    log_format: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve tenants over HTTP.
    Serve(ServeArgs),
    /// Validate a configuration file and its rules, check what starting each tenant needs
    /// (users, directories, virtualenvs, files) and import each tenant's app as its user.
    Check {
        /// The TOML configuration file.
        config: PathBuf,
        /// Skip the trial import of each tenant's app (one Python process per tenant).
        #[arg(long)]
        no_import: bool,
        /// Only validate the file (what `serve` itself refuses to start on): no tenant is
        /// looked at, so one tenant's problem does not fail it (systemd's ExecStartPre).
        #[arg(long, conflicts_with = "no_import")]
        file_only: bool,
    },
    /// List, inspect and change tenants of a running server (through its admin API).
    Tenants {
        #[command(flatten)]
        target: cli::Target,
        #[command(subcommand)]
        cmd: cli::TenantsCmd,
    },
    /// A cluster node's view: nodes, owners, drain, move (through its admin API).
    Cluster {
        #[command(flatten)]
        target: cli::Target,
        #[command(subcommand)]
        cmd: cli::ClusterCmd,
    },
    /// Re-read a running server's configuration (as SIGHUP), reporting a refused file.
    Reload {
        #[command(flatten)]
        target: cli::Target,
    },
    /// Replace a running server's process with the binary now installed at its path, with no
    /// failed request: the new one takes over the listening sockets, the old one drains (as
    /// SIGUSR2 to its main process).
    Upgrade {
        #[command(flatten)]
        target: cli::Target,
    },
    /// Back up sites: each site's own copy (Trac: hotcopy) as its user, into DEST/<date>/<name>.
    Backup {
        /// The TOML configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// Only this tenant (repeatable) [default: every tenant].
        #[arg(long)]
        tenant: Vec<String>,
        /// Where the dated backup directory is made.
        #[arg(long, default_value = "/var/backups/paddock")]
        dest: PathBuf,
        /// Longest one site's backup may take (e.g. `10min`).
        #[arg(long, default_value = "30min")]
        timeout: String,
    },
    /// Translate an Apache + mod_wsgi configuration: writes DIR/paddock.toml, DIR/paddock.rules
    /// and DIR/import-report.txt (what was not translated, each with file:line and why).
    ImportApache {
        /// The Apache configuration files, read in order as httpd reads its main file
        /// (Include and IncludeOptional are followed, relative to ServerRoot).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Where the three files are written (made if missing).
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Print the manual page (roff), e.g. `paddock man > /usr/share/man/man1/paddock.1`.
    Man,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// TOML configuration file; flags override it.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Sites directory: every directory under it holding conf/trac.ini is a tenant.
    #[arg(long)]
    sites: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long)]
    listen: Option<String>,
    /// Address of the admin listener (API, signup page, /metrics) [default: off, or [admin]].
    #[arg(long)]
    admin: Option<String>,
    /// Virtualenv for every tenant's workers (Trac installed there).
    #[arg(long)]
    virtualenv: Option<PathBuf>,
    /// Path of the paddock-worker binary [default: next to paddock].
    #[arg(long)]
    worker: Option<PathBuf>,
    /// Directory for tenants' sockets [default: /run as root, else the temp dir].
    #[arg(long)]
    runtime_dir: Option<PathBuf>,
    /// Allow tenants to run as root (not recommended).
    #[arg(long)]
    allow_root: bool,
}

fn main() -> ExitCode {
    // First, while the process has one thread: the hand-over from a process being upgraded.
    let inherited = match paddock_router::upgrade::take_inherited() {
        Ok(i) => i,
        Err(e) => {
            eprintln!("paddock: refusing an upgrade hand-over: {e}");
            return ExitCode::FAILURE;
        }
    };
    let cli = Cli::parse();
    init_logging(&cli.log_format);
    match cli.cmd {
        Cmd::Check { config, no_import, file_only } => {
            let what = match (file_only, no_import) {
                (true, _) => Depth::File,
                (false, true) => Depth::Tenants,
                (false, false) => Depth::Import,
            };
            check(&config, what)
        }
        Cmd::Serve(args) => serve(args, inherited),
        Cmd::Tenants { target, cmd } => admin_command(cli::tenants(&target, &cmd)),
        Cmd::Cluster { target, cmd } => admin_command(cli::cluster(&target, &cmd)),
        Cmd::Reload { target } => admin_command(cli::reload(&target)),
        Cmd::Upgrade { target } => admin_command(cli::upgrade(&target)),
        Cmd::Backup { config, tenant, dest, timeout } => backup(&config, &tenant, &dest, &timeout),
        Cmd::ImportApache { files, out } => import_apache(&files, &out),
        Cmd::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "paddock", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Cmd::Man => {
            let cmd = <Cli as clap::CommandFactory>::command();
            match clap_mangen::Man::new(cmd).render(&mut std::io::stdout()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("paddock: cannot write the manual page: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// `paddock import-apache`: the files, and the report on stdout; exit 0 with notes, 1 when
/// an input cannot be read or parsed (or the output cannot be written), 64 when the written
/// configuration does not load (a bug of the importer: its errors are printed).
fn import_apache(files: &[PathBuf], out: &std::path::Path) -> ExitCode {
    let imported = match paddock_import::import(files) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("paddock import-apache: {e}");
            return ExitCode::FAILURE;
        }
    };
    let problems = match imported.write(out) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("paddock import-apache: cannot write into {}: {e}", out.display());
            return ExitCode::FAILURE;
        }
    };
    for n in imported.notes.iter().filter(|n| n.kind != paddock_import::Kind::Ignored) {
        println!("{n}");
    }
    let files_read = imported.files_read.len();
    println!(
        "read {files_read} files; wrote {} ({}); {}",
        out.join(paddock_import::CONFIG_FILE).display(),
        if imported.rules.is_empty() { "no rules" } else { "and paddock.rules" },
        imported.summary()
    );
    println!("full report: {}", out.join(paddock_import::REPORT_FILE).display());
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("{p}");
        }
        eprintln!(
            "paddock import-apache: the written configuration does not load (please report this)"
        );
        return ExitCode::from(EXIT_CONFIG);
    }
    ExitCode::SUCCESS
}

/// `paddock backup`: one line per site; exit 1 if any failed.
fn backup(
    config: &std::path::Path,
    tenants: &[String],
    dest: &std::path::Path,
    timeout: &str,
) -> ExitCode {
    let cfg = match Config::load(config, &Overrides::default()) {
        Ok(c) => c,
        Err(d) => {
            eprintln!("{d}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let timeout = match paddock_config::units::parse_duration(timeout) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("paddock: --timeout: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("paddock: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(paddock_router::backup::run(&cfg, tenants, dest, timeout)) {
        Ok((day, outcomes)) => {
            let mut failed = 0;
            for o in &outcomes {
                match &o.result {
                    Ok(dir) => println!("{}: backed up to {}", o.tenant, dir.display()),
                    Err(e) => {
                        failed += 1;
                        eprintln!("{}: backup failed: {e}", o.tenant);
                    }
                }
            }
            println!(
                "{} of {} sites backed up in {}",
                outcomes.len() - failed,
                outcomes.len(),
                day.display()
            );
            if failed > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("paddock: backup: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Run one administration command on a small runtime; its output or its error.
fn admin_command(
    command: impl std::future::Future<Output = Result<String, cli::CliError>>,
) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("paddock: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(command) {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("paddock: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// `paddock check`: the file, then what a start of each tenant needs (`check.rs`). Errors and
/// then warnings on stderr; the OK line on stdout when there is no error.
/// How far `paddock check` goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Depth {
    File,
    Tenants,
    Import,
}

fn check(config: &std::path::Path, depth: Depth) -> ExitCode {
    let c = match Config::load(config, &Overrides::default()) {
        Ok(c) => c,
        Err(d) => {
            eprintln!("{d}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let report = match depth {
        Depth::File => paddock_router::check::Report::default(),
        _ => match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt.block_on(paddock_router::check::run(&c, depth == Depth::Import)),
            Err(e) => {
                eprintln!("paddock: cannot start the runtime: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    for e in &report.errors {
        eprintln!("{e}");
    }
    for w in c.warnings().iter().chain(&report.warnings) {
        eprintln!("{w}");
    }
    if !report.errors.is_empty() {
        return ExitCode::from(EXIT_CONFIG);
    }
    let tenants = match depth {
        Depth::File => "tenants not checked (--file-only)".to_string(),
        Depth::Tenants => {
            format!("{} tenants checked, apps not imported (--no-import)", report.tenants)
        }
        Depth::Import => {
            format!("{} tenants checked, {} apps imported", report.tenants, report.imported)
        }
    };
    println!(
        "{}: OK ({} configured tenants, {} rules; max_connections {}, max_workers_total {}; \
         {tenants})",
        config.display(),
        c.tenants.len(),
        c.rules.len(),
        c.max_connections,
        c.max_workers_total,
    );
    ExitCode::SUCCESS
}

fn serve(args: ServeArgs, inherited: paddock_router::upgrade::Inherited) -> ExitCode {
    let ov = Overrides {
        listen: args.listen,
        admin: args.admin,
        sites: args.sites,
        virtualenv: args.virtualenv,
        worker_bin: args.worker,
        runtime_dir: args.runtime_dir,
        allow_root: args.allow_root,
    };
    let loaded = match &args.config {
        Some(path) => Config::load(path, &ov),
        None => Config::from_overrides(&ov),
    };
    let config = match loaded {
        Ok(c) => c,
        Err(d) => {
            eprintln!("{d}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    for w in config.warnings() {
        tracing::warn!("{w}");
    }
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("paddock: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let phases = Arc::new(Phases::new());
    let served = rt.block_on(async {
        tokio::spawn(forward_signals(phases.clone()));
        paddock_router::run(config, ov, phases, inherited).await
    });
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("paddock: {e}");
            ExitCode::FAILURE
        }
    }
}

/// SIGTERM asks for a graceful stop (drain, then stop), SIGINT for a fast one; a second
/// signal during the drain makes it fast ([`Phases::request`]).
async fn forward_signals(phases: Arc<Phases>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) =
        (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        tracing::error!("cannot install signal handlers; stop paddock with SIGKILL");
        return;
    };
    loop {
        let stop = tokio::select! {
            Some(()) = term.recv() => {
                tracing::info!("SIGTERM: shutting down gracefully");
                Stop::Graceful
            }
            Some(()) = int.recv() => {
                tracing::info!("SIGINT: shutting down at once");
                Stop::Fast
            }
            else => return,
        };
        phases.request(stop);
    }
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PADDOCK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}
