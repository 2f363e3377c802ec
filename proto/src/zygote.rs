//! Messages between the router and a worker zygote (`paddock-worker zygote`), on the
//! `SOCK_SEQPACKET` socket the zygote inherits as fd 3.
//!
//! Same framing as [`crate::Frame`] (`type: u8`, `len: u32` big endian, payload) with types 16
//! and up, so a message can never be mistaken for a worker frame. Each message travels in one
//! packet; a [`ZygoteMsg::Spawn`] carries three descriptors as `SCM_RIGHTS` (the tenant's
//! listening socket, the control pipe's write end, the stderr pipe's write end), which are not
//! part of the payload. The codec is pure and total, like [`crate::decode`].
//!
//! See `docs/zygote.md`.

use crate::codec::{envelope, put_bytes, put_pairs, Reader};
use crate::frame::Fields;
use crate::{DecodeError, FRAME_HEADER_LEN, MAX_FIELDS, MAX_PAYLOAD};

/// Most supplementary groups in a [`Creds`] (the kernel's `NGROUPS_MAX`).
pub const MAX_GROUPS: usize = 65536;

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
    /// Router → zygote: fork a worker (three descriptors ride along as `SCM_RIGHTS`).
    Spawn(SpawnRequest),
    /// Zygote → router: the worker of request `id` runs as `pid`.
    Spawned { id: u32, pid: u32 },
    /// Zygote → router: request `id` could not be served; nothing was started.
    SpawnFailed { id: u32, message: Vec<u8> },
    /// Zygote → router: its child `pid` ended; `status` is the raw `waitpid` status.
    Exited { pid: u32, status: i32 },
}

/// Everything a forked worker needs that a directly spawned one gets from `exec` and the
/// router's `pre_exec`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpawnRequest {
    /// Chosen by the router; echoed in the answer.
    pub id: u32,
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
            ZygoteMsg::Spawn(_) => ZygoteType::Spawn,
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
        ZygoteType::Spawn => ZygoteMsg::Spawn(decode_spawn(&mut r)?),
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

fn decode_spawn(r: &mut Reader<'_>) -> Result<SpawnRequest, DecodeError> {
    let id = r.u32("id")?;
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
    Ok(SpawnRequest { id, args, env, cwd, umask, creds })
}

/// Append the encoding of `msg` to `out`. A message over [`MAX_PAYLOAD`] is a caller bug
/// (the router bounds arguments and environment), caught by a debug assertion.
pub fn encode(msg: &ZygoteMsg, out: &mut Vec<u8>) {
    let start = out.len();
    out.push(msg.msg_type() as u8);
    out.extend_from_slice(&[0; 4]);
    match msg {
        ZygoteMsg::Spawn(s) => encode_spawn(s, out),
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

fn encode_spawn(s: &SpawnRequest, out: &mut Vec<u8>) {
    out.extend_from_slice(&s.id.to_be_bytes());
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
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> SpawnRequest {
        SpawnRequest {
            id: 7,
            args: vec![
                b"--tenant".to_vec(),
                b"demo".to_vec(),
                b"--threads".to_vec(),
                b"4".to_vec(),
            ],
            env: vec![
                (b"HOME".to_vec(), b"/srv/demo".to_vec()),
                (b"LANG".to_vec(), b"C.UTF-8".to_vec()),
            ],
            cwd: b"/srv/demo".to_vec(),
            umask: 0o022,
            creds: Some(Creds { uid: 1001, gid: 1001, groups: vec![1001, 27] }),
        }
    }

    fn roundtrip(m: ZygoteMsg) {
        let mut out = Vec::new();
        encode(&m, &mut out);
        let (back, used) = decode(&out).expect("valid").expect("complete");
        assert_eq!(used, out.len());
        assert_eq!(back, m);
        for cut in 0..out.len() {
            assert_eq!(decode(&out[..cut]), Ok(None), "prefix of {cut} bytes");
        }
    }

    #[test]
    fn each_message_roundtrips() {
        roundtrip(ZygoteMsg::Spawn(sample()));
        roundtrip(ZygoteMsg::Spawn(SpawnRequest { creds: None, ..sample() }));
        roundtrip(ZygoteMsg::Spawn(SpawnRequest::default()));
        roundtrip(ZygoteMsg::Spawned { id: 1, pid: 4242 });
        roundtrip(ZygoteMsg::SpawnFailed {
            id: u32::MAX,
            message: b"not single-threaded".to_vec(),
        });
        roundtrip(ZygoteMsg::Exited { pid: 99, status: 0x0f00 });
        roundtrip(ZygoteMsg::Exited { pid: 99, status: -1 });
    }

    #[test]
    fn worker_frames_and_bad_input_are_errors() {
        let mut out = Vec::new();
        crate::encode(&crate::Frame::End, &mut out);
        assert_eq!(decode(&out), Err(DecodeError::UnknownType(4)));
        assert_eq!(decode(&[9]), Err(DecodeError::UnknownType(9)));
        assert_eq!(
            decode(&[17, 0xff, 0xff, 0xff, 0xff]),
            Err(DecodeError::TooLarge(u32::MAX as u64))
        );
        // A huge argument count in a tiny payload fails without allocating.
        assert_eq!(
            decode(&[16, 0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 3, 0]),
            Err(DecodeError::Truncated("args"))
        );
        let mut out = Vec::new();
        encode(&ZygoteMsg::Spawned { id: 1, pid: 2 }, &mut out);
        out[4] += 1;
        out.push(0);
        assert_eq!(decode(&out), Err(DecodeError::TrailingBytes(1)));
        let mut out = Vec::new();
        encode(&ZygoteMsg::Spawn(sample()), &mut out);
        let flag_at = out.len() - 4 * 5 - 1;
        out[flag_at] = 2;
        assert_eq!(decode(&out), Err(DecodeError::Invalid("creds flag")));
    }

    fn bytes() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(any::<u8>(), 0..40)
    }

    fn spawn_request() -> impl Strategy<Value = SpawnRequest> {
        let creds = prop::option::of((
            any::<u32>(),
            any::<u32>(),
            prop::collection::vec(any::<u32>(), 0..8),
        ))
        .prop_map(|c| c.map(|(uid, gid, groups)| Creds { uid, gid, groups }));
        (
            any::<u32>(),
            prop::collection::vec(bytes(), 0..8),
            prop::collection::vec((bytes(), bytes()), 0..8),
            bytes(),
            any::<u32>(),
            creds,
        )
            .prop_map(|(id, args, env, cwd, umask, creds)| SpawnRequest {
                id,
                args,
                env,
                cwd,
                umask,
                creds,
            })
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(buf in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&buf);
        }

        #[test]
        fn arbitrary_bytes_after_a_valid_type(t in 16u8..20, rest in prop::collection::vec(any::<u8>(), 0..256)) {
            let mut buf = vec![t];
            buf.extend_from_slice(&((rest.len() as u32).to_be_bytes()));
            buf.extend_from_slice(&rest);
            let _ = decode(&buf);
        }

        #[test]
        fn spawn_requests_roundtrip(s in spawn_request()) {
            let m = ZygoteMsg::Spawn(s);
            let mut out = Vec::new();
            encode(&m, &mut out);
            prop_assert_eq!(decode(&out), Ok(Some((m, out.len()))));
        }

        #[test]
        fn answers_roundtrip(id in any::<u32>(), pid in any::<u32>(), status in any::<i32>(), msg in bytes()) {
            for m in [
                ZygoteMsg::Spawned { id, pid },
                ZygoteMsg::SpawnFailed { id, message: msg.clone() },
                ZygoteMsg::Exited { pid, status },
            ] {
                let mut out = Vec::new();
                encode(&m, &mut out);
                prop_assert_eq!(decode(&out), Ok(Some((m, out.len()))));
            }
        }
    }
}
