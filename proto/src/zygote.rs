//! Messages between the router and a worker zygote (`paddock-worker zygote`), on the
//! `SOCK_SEQPACKET` socket the zygote inherits as fd 3.
//!
//! Same framing as [`crate::Frame`] (`type: u8`, `len: u32` big endian, payload) with types 16
//! and up, so a message can never be mistaken for a worker frame. Each message travels in one
//! packet; a [`ZygoteMsg::Spawn`] carries four descriptors as `SCM_RIGHTS` (the tenant's
//! listening socket, the control pipe's write end, the stderr pipe's write end, and a sealed
//! memfd holding the [`WorkerSetup`]), which are not part of the payload. The codec is pure and
//! total, like [`crate::decode`].
//!
//! Nothing tenant-specific is in a socket message: the zygote serves every tenant of its Python
//! configuration, and whatever it receives stays in its memory and in that of every worker it
//! forks later. The tenant's setup (arguments, environment, directory, identity) is one frame
//! of type [`SETUP_TYPE`] in the memfd, which only the forked child reads.
//!
//! See `docs/zygote.md`.

use crate::codec::{envelope, put_bytes, put_pairs, Reader};
use crate::frame::Fields;
use crate::{DecodeError, FRAME_HEADER_LEN, MAX_FIELDS, MAX_PAYLOAD};

/// Most supplementary groups in a [`Creds`] (the kernel's `NGROUPS_MAX`).
pub const MAX_GROUPS: usize = 65536;

/// Type byte of the [`WorkerSetup`] frame in the setup memfd; never valid on the socket.
pub const SETUP_TYPE: u8 = 20;

/// Wire type bytes of the zygote messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ZygoteType {
    Spawn = 16,
    Spawned = 17,
    SpawnFailed = 18,
    Exited = 19,
}

impl ZygoteType {
    pub fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            16 => Self::Spawn,
            17 => Self::Spawned,
            18 => Self::SpawnFailed,
            19 => Self::Exited,
            _ => return None,
        })
    }
}

/// One message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZygoteMsg {
    /// Router → zygote: fork a worker (four descriptors ride along as `SCM_RIGHTS`); `id` is
    /// chosen by the router and echoed in the answer. Deliberately nothing else.
    Spawn { id: u32 },
    /// Zygote → router: the worker of request `id` runs as `pid`.
    Spawned { id: u32, pid: u32 },
    /// Zygote → router: request `id` could not be served; nothing was started.
    SpawnFailed { id: u32, message: Vec<u8> },
    /// Zygote → router: its child `pid` ended; `status` is the raw `waitpid` status.
    Exited { pid: u32, status: i32 },
}

/// Everything a forked worker needs that a directly spawned one gets from `exec` and the
/// router's `pre_exec`: the content of the setup memfd, read by the forked child alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerSetup {
    /// The worker's command-line arguments after the program name: exactly the flags a
    /// directly spawned worker gets, parsed by the same parser.
    pub args: Vec<Vec<u8>>,
    /// The complete environment of the worker (it replaces the zygote's).
    pub env: Fields,
    /// Working directory.
    pub cwd: Vec<u8>,
    pub umask: u32,
    /// Switch to these credentials; `None`: keep the zygote's (a router that is not root).
    pub creds: Option<Creds>,
}

/// A Unix identity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Creds {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

impl ZygoteMsg {
    pub fn msg_type(&self) -> ZygoteType {
        match self {
            ZygoteMsg::Spawn { .. } => ZygoteType::Spawn,
            ZygoteMsg::Spawned { .. } => ZygoteType::Spawned,
            ZygoteMsg::SpawnFailed { .. } => ZygoteType::SpawnFailed,
            ZygoteMsg::Exited { .. } => ZygoteType::Exited,
        }
    }
}

/// Decode one message from the start of `buf`: `Ok(None)` if more bytes are needed, else the
/// message and the bytes it used.
pub fn decode(buf: &[u8]) -> Result<Option<(ZygoteMsg, usize)>, DecodeError> {
    let Some((ty, mut r, total)) = envelope(buf, ZygoteType::from_u8)? else {
        return Ok(None);
    };
    let msg = match ty {
        ZygoteType::Spawn => ZygoteMsg::Spawn { id: r.u32("id")? },
        ZygoteType::Spawned => ZygoteMsg::Spawned { id: r.u32("id")?, pid: r.u32("pid")? },
        ZygoteType::SpawnFailed => {
            ZygoteMsg::SpawnFailed { id: r.u32("id")?, message: r.bytes("message")? }
        }
        ZygoteType::Exited => {
            ZygoteMsg::Exited { pid: r.u32("pid")?, status: r.u32("status")? as i32 }
        }
    };
    r.finish()?;
    Ok(Some((msg, total)))
}

/// Decode the whole content of a setup memfd: exactly one [`SETUP_TYPE`] frame.
pub fn decode_setup(buf: &[u8]) -> Result<WorkerSetup, DecodeError> {
    let known = |t| (t == SETUP_TYPE).then_some(());
    let Some(((), mut r, total)) = envelope(buf, known)? else {
        return Err(DecodeError::Truncated("setup frame"));
    };
    if total != buf.len() {
        return Err(DecodeError::TrailingBytes(buf.len() - total));
    }
    let setup = decode_setup_fields(&mut r)?;
    r.finish()?;
    Ok(setup)
}

fn decode_setup_fields(r: &mut Reader<'_>) -> Result<WorkerSetup, DecodeError> {
    let n = r.u32("args")?;
    if n as usize > MAX_FIELDS {
        return Err(DecodeError::TooManyFields(n));
    }
    // Each argument needs at least its 4-byte length: bounds the allocation by the payload.
    if (n as usize).saturating_mul(4) > r.buf.len() {
        return Err(DecodeError::Truncated("args"));
    }
    let mut args = Vec::with_capacity(n as usize);
    for _ in 0..n {
        args.push(r.bytes("args")?);
    }
    let env = r.pairs("env")?;
    let cwd = r.bytes("cwd")?;
    let umask = r.u32("umask")?;
    let creds = match r.u8("creds flag")? {
        0 => None,
        1 => {
            let uid = r.u32("uid")?;
            let gid = r.u32("gid")?;
            let n = r.u32("groups")?;
            if n as usize > MAX_GROUPS {
                return Err(DecodeError::TooManyFields(n));
            }
            if (n as usize).saturating_mul(4) > r.buf.len() {
                return Err(DecodeError::Truncated("groups"));
            }
            let groups = (0..n).map(|_| r.u32("groups")).collect::<Result<_, _>>()?;
            Some(Creds { uid, gid, groups })
        }
        _ => return Err(DecodeError::Invalid("creds flag")),
    };
    Ok(WorkerSetup { args, env, cwd, umask, creds })
}

/// Append the encoding of `msg` to `out`. A message over [`MAX_PAYLOAD`] (only a huge
/// `SpawnFailed` text could be) is a caller bug, caught by a debug assertion.
pub fn encode(msg: &ZygoteMsg, out: &mut Vec<u8>) {
    let start = out.len();
    out.push(msg.msg_type() as u8);
    out.extend_from_slice(&[0; 4]);
    match msg {
        ZygoteMsg::Spawn { id } => out.extend_from_slice(&id.to_be_bytes()),
        ZygoteMsg::Spawned { id, pid } => {
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&pid.to_be_bytes());
        }
        ZygoteMsg::SpawnFailed { id, message } => {
            out.extend_from_slice(&id.to_be_bytes());
            put_bytes(out, message);
        }
        ZygoteMsg::Exited { pid, status } => {
            out.extend_from_slice(&pid.to_be_bytes());
            out.extend_from_slice(&(*status as u32).to_be_bytes());
        }
    }
    let len = out.len() - start - FRAME_HEADER_LEN;
    debug_assert!(len <= MAX_PAYLOAD, "zygote message payload {len} over the limit");
    out[start + 1..start + FRAME_HEADER_LEN].copy_from_slice(&(len as u32).to_be_bytes());
}

/// Append the [`SETUP_TYPE`] frame of `s` to `out`; `Err(TooLarge)` (and `out` as it was) if
/// its payload is over [`MAX_PAYLOAD`], which the reading child would refuse.
pub fn encode_setup(s: &WorkerSetup, out: &mut Vec<u8>) -> Result<(), DecodeError> {
    let start = out.len();
    out.push(SETUP_TYPE);
    out.extend_from_slice(&[0; 4]);
    encode_setup_fields(s, out);
    let len = out.len() - start - FRAME_HEADER_LEN;
    if len > MAX_PAYLOAD {
        out.truncate(start);
        return Err(DecodeError::TooLarge(len as u64));
    }
    out[start + 1..start + FRAME_HEADER_LEN].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(())
}

fn encode_setup_fields(s: &WorkerSetup, out: &mut Vec<u8>) {
    out.extend_from_slice(&(s.args.len() as u32).to_be_bytes());
    for a in &s.args {
        put_bytes(out, a);
    }
    put_pairs(out, &s.env);
    put_bytes(out, &s.cwd);
    out.extend_from_slice(&s.umask.to_be_bytes());
    match &s.creds {
        None => out.push(0),
        Some(c) => {
            out.push(1);
            out.extend_from_slice(&c.uid.to_be_bytes());
            out.extend_from_slice(&c.gid.to_be_bytes());
            out.extend_from_slice(&(c.groups.len() as u32).to_be_bytes());
            for g in &c.groups {
                out.extend_from_slice(&g.to_be_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests;
