//! The forked child's setup: the sealed memfd the router sent with the `Spawn`, read here, in
//! the child only (never in the zygote, whose memory every later worker inherits), and parsed
//! by the normal worker's command-line parser. See `docs/zygote.md`, *A spawn*.

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;

use clap::Parser;
use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use paddock_proto::zygote::{self as msg, WorkerSetup};
use paddock_proto::{FRAME_HEADER_LEN, MAX_PAYLOAD};

use crate::Config;

/// The [`WorkerSetup`] in the memfd the router sent: sealed against change (checked), a
/// regular file of at most one frame (checked before anything is allocated), read whole.
pub(super) fn read_setup(fd: OwnedFd) -> Result<WorkerSetup, String> {
    let sealed = SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_WRITE;
    let seals = fcntl(fd.as_raw_fd(), FcntlArg::F_GET_SEALS)
        .map_err(|e| format!("the setup descriptor is not a memfd: {e}"))?;
    if !SealFlag::from_bits_truncate(seals).contains(sealed) {
        return Err("the setup memfd is not sealed".to_string());
    }
    let file = File::from(fd);
    let meta = file.metadata().map_err(|e| format!("fstat of the setup memfd: {e}"))?;
    let max = (FRAME_HEADER_LEN + MAX_PAYLOAD) as u64;
    if !meta.is_file() || meta.len() > max {
        return Err(format!("the setup memfd holds {} bytes (at most {max})", meta.len()));
    }
    let mut buf = vec![0u8; meta.len() as usize];
    // At offset 0: the file position is shared with the router's descriptor, which wrote it.
    file.read_exact_at(&mut buf, 0).map_err(|e| format!("reading the setup memfd: {e}"))?;
    msg::decode_setup(&buf).map_err(|e| format!("bad worker setup: {e}"))
}

/// The command line (by the normal worker's own parser, so the two ways of starting a worker
/// cannot drift apart) and the working directory of `setup`.
pub(super) fn parse_setup(setup: WorkerSetup) -> Result<(WorkerSetup, Config, CString), String> {
    let cwd = CString::new(setup.cwd.clone()).map_err(|_| "working directory contains NUL")?;
    let argv = std::iter::once(OsString::from("paddock-worker"))
        .chain(setup.args.iter().map(|a| OsStr::from_bytes(a).to_owned()));
    let cfg = Config::try_parse_from(argv).map_err(|e| e.to_string())?;
    cfg.validate()?;
    Ok((setup, cfg, cwd))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    use nix::sys::memfd::{memfd_create, MemFdCreateFlag};

    fn memfd(bytes: &[u8], seals: SealFlag) -> OwnedFd {
        let flags = MemFdCreateFlag::MFD_CLOEXEC | MemFdCreateFlag::MFD_ALLOW_SEALING;
        let mut f = File::from(memfd_create(c"test-setup", flags).expect("memfd"));
        f.write_all(bytes).expect("write");
        fcntl(f.as_raw_fd(), FcntlArg::F_ADD_SEALS(seals)).expect("seal");
        f.into()
    }

    fn all_seals() -> SealFlag {
        SealFlag::F_SEAL_SHRINK
            | SealFlag::F_SEAL_GROW
            | SealFlag::F_SEAL_WRITE
            | SealFlag::F_SEAL_SEAL
    }

    fn sample() -> WorkerSetup {
        WorkerSetup {
            args: ["--tenant", "t", "--app", "m:app", "--threads", "2", "--listen-fd", "3"]
                .map(|a| a.as_bytes().to_vec())
                .to_vec(),
            env: vec![(b"HOME".to_vec(), b"/srv/t".to_vec())],
            cwd: b"/srv/t".to_vec(),
            umask: 0o027,
            creds: None,
        }
    }

    #[test]
    fn a_sealed_setup_is_read_whole_from_the_start() {
        let mut bytes = Vec::new();
        msg::encode_setup(&sample(), &mut bytes).expect("fits");
        // Written through the descriptor, so its position is at the end, as the router leaves it.
        assert_eq!(read_setup(memfd(&bytes, all_seals())), Ok(sample()));
    }

    #[test]
    fn unsealed_oversized_garbage_and_non_memfd_setups_are_refused() {
        let mut bytes = Vec::new();
        msg::encode_setup(&sample(), &mut bytes).expect("fits");
        let unsealed = read_setup(memfd(&bytes, SealFlag::F_SEAL_SHRINK));
        assert!(unsealed.is_err_and(|e| e.contains("not sealed")));
        let huge = vec![0u8; FRAME_HEADER_LEN + MAX_PAYLOAD + 1];
        assert!(read_setup(memfd(&huge, all_seals())).is_err_and(|e| e.contains("at most")));
        let garbage = read_setup(memfd(b"\x10\0\0\0\x04\0\0\0\x07", all_seals()));
        assert!(garbage.is_err_and(|e| e.contains("bad worker setup")));
        assert!(read_setup(memfd(b"", all_seals())).is_err());
        let (read, _write) = nix::unistd::pipe().expect("pipe");
        assert!(read_setup(read).is_err_and(|e| e.contains("not a memfd")));
    }

    #[test]
    fn a_setup_is_parsed_by_the_workers_own_command_line_parser() {
        let (_, cfg, cwd) = parse_setup(sample()).expect("valid");
        assert_eq!((cfg.tenant.as_str(), cwd.as_bytes()), ("t", &b"/srv/t"[..]));
        let bad = WorkerSetup { args: vec![b"--no-such-flag".to_vec()], ..sample() };
        assert!(parse_setup(bad).is_err());
        let nul = WorkerSetup { cwd: b"/srv/\0t".to_vec(), ..sample() };
        assert!(parse_setup(nul).is_err_and(|e| e.contains("NUL")));
    }
}
