//! `paddock-worker`: parse the command line, set up logging, run. See `docs/worker.md`.

use clap::error::ErrorKind;
use clap::Parser;
use paddock_worker::{init_logging, run, Config, Exit};

fn main() {
    let cfg = match Config::try_parse() {
        Ok(cfg) => cfg,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            e.exit()
        }
        Err(e) => {
            let _ = e.print();
            std::process::exit(Exit::Usage as i32);
        }
    };
    init_logging(&cfg.tenant);
    std::panic::set_hook(Box::new(|info| {
        tracing::error!("panic: {info}");
    }));
    let code = run(cfg);
    // Exit explicitly: worker threads may still be blocked (drain timeout) and must not be
    // waited for.
    std::process::exit(code as i32);
}
