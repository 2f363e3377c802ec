use super::*;
use proptest::prelude::*;

fn sample() -> WorkerSetup {
    WorkerSetup {
        args: vec![b"--tenant".to_vec(), b"demo".to_vec(), b"--threads".to_vec(), b"4".to_vec()],
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

fn setup_roundtrip(s: &WorkerSetup) -> Vec<u8> {
    let mut out = Vec::new();
    encode_setup(s, &mut out).expect("within the limit");
    assert_eq!(decode_setup(&out).as_ref(), Ok(s));
    out
}

#[test]
fn each_message_roundtrips() {
    roundtrip(ZygoteMsg::Spawn { id: 7 });
    roundtrip(ZygoteMsg::Spawned { id: 1, pid: 4242 });
    roundtrip(ZygoteMsg::SpawnFailed { id: u32::MAX, message: b"not single-threaded".to_vec() });
    roundtrip(ZygoteMsg::Exited { pid: 99, status: 0x0f00 });
    roundtrip(ZygoteMsg::Exited { pid: 99, status: -1 });
}

#[test]
fn a_spawn_message_carries_nothing_but_its_id() {
    let mut out = Vec::new();
    encode(&ZygoteMsg::Spawn { id: 7 }, &mut out);
    assert_eq!(out, [16, 0, 0, 0, 4, 0, 0, 0, 7]);
}

#[test]
fn setups_roundtrip_and_every_cut_is_an_error() {
    setup_roundtrip(&WorkerSetup { creds: None, ..sample() });
    setup_roundtrip(&WorkerSetup::default());
    let out = setup_roundtrip(&sample());
    for cut in 0..out.len() {
        assert!(decode_setup(&out[..cut]).is_err(), "prefix of {cut} bytes");
    }
    let mut longer = out.clone();
    longer.push(0);
    assert_eq!(decode_setup(&longer), Err(DecodeError::TrailingBytes(1)));
}

#[test]
fn setups_and_socket_messages_cannot_be_mistaken() {
    let out = setup_roundtrip(&sample());
    assert_eq!(decode(&out), Err(DecodeError::UnknownType(SETUP_TYPE)));
    let mut spawn = Vec::new();
    encode(&ZygoteMsg::Spawn { id: 1 }, &mut spawn);
    assert_eq!(decode_setup(&spawn), Err(DecodeError::UnknownType(16)));
}

#[test]
fn an_oversized_setup_is_refused_and_leaves_the_buffer() {
    let big = WorkerSetup { cwd: vec![b'x'; MAX_PAYLOAD], ..sample() };
    let mut out = b"kept".to_vec();
    assert!(matches!(encode_setup(&big, &mut out), Err(DecodeError::TooLarge(_))));
    assert_eq!(out, b"kept");
}

#[test]
fn worker_frames_and_bad_input_are_errors() {
    let mut out = Vec::new();
    crate::encode(&crate::Frame::End, &mut out);
    assert_eq!(decode(&out), Err(DecodeError::UnknownType(4)));
    assert_eq!(decode(&[9]), Err(DecodeError::UnknownType(9)));
    assert_eq!(decode(&[17, 0xff, 0xff, 0xff, 0xff]), Err(DecodeError::TooLarge(u32::MAX as u64)));
    // A huge argument count in a tiny payload fails without allocating.
    assert_eq!(
        decode_setup(&[SETUP_TYPE, 0, 0, 0, 4, 0, 0, 3, 0]),
        Err(DecodeError::Truncated("args"))
    );
    let mut out = Vec::new();
    encode(&ZygoteMsg::Spawned { id: 1, pid: 2 }, &mut out);
    out[4] += 1;
    out.push(0);
    assert_eq!(decode(&out), Err(DecodeError::TrailingBytes(1)));
    let mut out = Vec::new();
    encode_setup(&sample(), &mut out).expect("fits");
    let flag_at = out.len() - 4 * 5 - 1;
    out[flag_at] = 2;
    assert_eq!(decode_setup(&out), Err(DecodeError::Invalid("creds flag")));
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..40)
}

fn worker_setup() -> impl Strategy<Value = WorkerSetup> {
    let creds =
        prop::option::of((any::<u32>(), any::<u32>(), prop::collection::vec(any::<u32>(), 0..8)))
            .prop_map(|c| c.map(|(uid, gid, groups)| Creds { uid, gid, groups }));
    (
        prop::collection::vec(bytes(), 0..8),
        prop::collection::vec((bytes(), bytes()), 0..8),
        bytes(),
        any::<u32>(),
        creds,
    )
        .prop_map(|(args, env, cwd, umask, creds)| WorkerSetup {
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
        let _ = decode_setup(&buf);
    }

    #[test]
    fn arbitrary_bytes_after_a_valid_type(t in 16u8..21, rest in prop::collection::vec(any::<u8>(), 0..256)) {
        let mut buf = vec![t];
        buf.extend_from_slice(&((rest.len() as u32).to_be_bytes()));
        buf.extend_from_slice(&rest);
        let _ = decode(&buf);
        let _ = decode_setup(&buf);
    }

    #[test]
    fn worker_setups_roundtrip(s in worker_setup()) {
        let mut out = Vec::new();
        prop_assert_eq!(encode_setup(&s, &mut out), Ok(()));
        prop_assert_eq!(decode_setup(&out), Ok(s));
    }

    #[test]
    fn answers_roundtrip(id in any::<u32>(), pid in any::<u32>(), status in any::<i32>(), msg in bytes()) {
        for m in [
            ZygoteMsg::Spawn { id },
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
