//! `paddock-worker`: parse the command line, set up logging, run. See `docs/worker.md`;
//! `paddock-worker zygote ...` runs a zygote instead (`docs/zygote.md`).

use clap::error::ErrorKind;
use clap::Parser;
use paddock_worker::{init_logging, run, run_zygote, Config, Exit, ZygoteConfig};

fn main() {
    if std::env::args_os().nth(1).is_some_and(|a| a == "zygote") {
        zygote();
    }
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

/// `paddock-worker zygote FLAGS`: "zygote" takes the place of the program name for clap.
fn zygote() -> ! {
    let cfg = match ZygoteConfig::try_parse_from(std::env::args_os().skip(1)) {
        Ok(cfg) => cfg,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            e.exit()
        }
        Err(e) => {
            let _ = e.print();
            std::process::exit(Exit::Usage as i32);
        }
    };
    init_logging("zygote");
    std::panic::set_hook(Box::new(|info| {
        tracing::error!("panic: {info}");
    }));
    std::process::exit(run_zygote(cfg) as i32)
}
