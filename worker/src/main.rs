//! `paddock-worker`: parse the command line, set up logging, run. See `docs/worker.md`;
//! `paddock-worker zygote ...` runs a zygote instead (`docs/zygote.md`); `paddock-worker
//! python-version` prints the `major.minor` of the embedded Python (for `paddock check`).

use std::ffi::OsString;

use clap::error::ErrorKind;
use clap::Parser;
use paddock_worker::{init_logging, python_version, run, run_zygote, Config, Exit, ZygoteConfig};

fn main() {
    if std::env::args_os().nth(1).is_some_and(|a| a == "python-version") {
        println!("{}", python_version());
        std::process::exit(0);
    }
    let code = if std::env::args_os().nth(1).is_some_and(|a| a == "zygote") {
        // "zygote" takes the place of the program name for clap.
        let cfg: ZygoteConfig = parse_or_exit(std::env::args_os().skip(1));
        start_logging();
        run_zygote(cfg)
    } else {
        let cfg: Config = parse_or_exit(std::env::args_os());
        start_logging();
        run(cfg)
    };
    // Exit explicitly: worker threads may still be blocked (drain timeout) and must not be
    // waited for.
    std::process::exit(code as i32);
}

/// The parsed command line; on `--help`/`--version` print and exit 0, on an error exit 64.
fn parse_or_exit<T: Parser>(args: impl IntoIterator<Item = OsString>) -> T {
    match T::try_parse_from(args) {
        Ok(cfg) => cfg,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            e.exit()
        }
        Err(e) => {
            let _ = e.print();
            std::process::exit(Exit::Usage as i32);
        }
    }
}

fn start_logging() {
    init_logging();
    std::panic::set_hook(Box::new(|info| {
        tracing::error!("panic: {info}");
    }));
}
