use super::*;
use proptest::prelude::*;

fn sample_request() -> RequestHead {
    RequestHead {
        method: b"POST".to_vec(),
        script_name: b"/trac/demo-1".to_vec(),
        path_info: b"/wiki/\xe9t\xe9".to_vec(),
        query_string: b"a=1&b=%20".to_vec(),
        request_uri: b"/trac/demo-1/wiki/\xe9t\xe9?a=1&b=%20".to_vec(),
        protocol: b"HTTP/1.1".to_vec(),
        scheme: b"http".to_vec(),
        server_name: b"127.0.0.1".to_vec(),
        server_port: 8080,
        remote_addr: b"127.0.0.1".to_vec(),
        remote_port: 40000,
        body: BodyKind::Length(5 << 20),
        headers: vec![(b"Host".to_vec(), b"127.0.0.1:8080".to_vec())],
        environ: vec![(b"trac.env_path".to_vec(), b"/srv/trac/sites/demo-1".to_vec())],
    }
}

fn roundtrip(f: Frame) {
    let mut out = Vec::new();
    encode(&f, &mut out);
    let (g, used) = decode(&out).expect("valid").expect("complete");
    assert_eq!(used, out.len());
    assert_eq!(f, g);
    // Every strict prefix is "need more bytes", never an error or a frame.
    for cut in 0..out.len() {
        assert_eq!(decode(&out[..cut]), Ok(None), "prefix of {cut} bytes");
    }
}

#[test]
fn each_frame_type_roundtrips() {
    roundtrip(Frame::Hello(Hello { version: crate::VERSION, pid: 4242 }));
    roundtrip(Frame::Ready(Ready { pid: 7 }));
    roundtrip(Frame::Goodbye);
    roundtrip(Frame::Retire(Retire { pid: 7, requests: 1000 }));
    roundtrip(Frame::Retire(Retire { pid: u32::MAX, requests: u64::MAX }));
    roundtrip(Frame::Request(sample_request()));
    roundtrip(Frame::Request(RequestHead { body: BodyKind::Chunked, ..sample_request() }));
    roundtrip(Frame::Request(RequestHead::default()));
    roundtrip(Frame::Body(vec![0, 1, 2, 255]));
    roundtrip(Frame::Body(Vec::new()));
    roundtrip(Frame::End);
    roundtrip(Frame::Response(ResponseHead {
        status: 200,
        reason: b"OK".to_vec(),
        headers: vec![
            (b"Set-Cookie".to_vec(), b"a=b".to_vec()),
            (b"Set-Cookie".to_vec(), b"c=d".to_vec()),
        ],
    }));
    roundtrip(Frame::Abort(Abort { kind: AbortKind::AppError, message: b"boom".to_vec() }));
}

#[test]
fn two_frames_back_to_back() {
    let mut out = Vec::new();
    encode(&Frame::Body(b"abc".to_vec()), &mut out);
    encode(&Frame::End, &mut out);
    let (f, used) = decode(&out).unwrap().unwrap();
    assert_eq!(f, Frame::Body(b"abc".to_vec()));
    let (g, used2) = decode(&out[used..]).unwrap().unwrap();
    assert_eq!(g, Frame::End);
    assert_eq!(used + used2, out.len());
}

#[test]
fn body_header_matches_encode() {
    let mut out = Vec::new();
    encode(&Frame::Body(vec![9; 300]), &mut out);
    assert_eq!(&out[..5], &encode_body_header(300));
}

#[test]
fn oversized_length_is_refused_before_allocating() {
    let buf = [FrameType::Body as u8, 0xff, 0xff, 0xff, 0xff];
    assert_eq!(decode(&buf), Err(DecodeError::TooLarge(0xffff_ffff)));
}

#[test]
fn unknown_type_fails_fast() {
    assert_eq!(decode(&[0x99]), Err(DecodeError::UnknownType(0x99)));
    assert_eq!(decode(&[0, 0, 0, 0, 0]), Err(DecodeError::UnknownType(0)));
}

#[test]
fn too_many_fields_is_refused() {
    let mut p = Vec::new();
    p.extend_from_slice(&200u16.to_be_bytes());
    p.extend_from_slice(&0u32.to_be_bytes());
    p.extend_from_slice(&(crate::MAX_FIELDS as u32 + 1).to_be_bytes());
    let mut buf = vec![FrameType::Response as u8];
    buf.extend_from_slice(&(p.len() as u32).to_be_bytes());
    buf.extend_from_slice(&p);
    assert_eq!(decode(&buf), Err(DecodeError::TooManyFields(crate::MAX_FIELDS as u32 + 1)));
}

#[test]
fn trailing_bytes_are_refused() {
    let buf = [FrameType::End as u8, 0, 0, 0, 1, 0];
    assert_eq!(decode(&buf), Err(DecodeError::TrailingBytes(1)));
}

#[test]
fn bad_abort_kind_is_refused() {
    let buf = [FrameType::Abort as u8, 0, 0, 0, 6, 0, 99, 0, 0, 0, 0];
    assert_eq!(decode(&buf), Err(DecodeError::Invalid("abort kind")));
}

fn bytes_strategy() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..64)
}

fn pairs_strategy() -> impl Strategy<Value = Vec<(Vec<u8>, Vec<u8>)>> {
    proptest::collection::vec((bytes_strategy(), bytes_strategy()), 0..8)
}

prop_compose! {
    fn request_strategy()(
        f in proptest::collection::vec(bytes_strategy(), 9),
        ports in any::<(u16, u16)>(),
        body in prop_oneof![Just(BodyKind::Empty), Just(BodyKind::Chunked), any::<u64>().prop_map(BodyKind::Length)],
        headers in pairs_strategy(),
        environ in pairs_strategy(),
    ) -> RequestHead {
        RequestHead {
            method: f[0].clone(), script_name: f[1].clone(), path_info: f[2].clone(),
            query_string: f[3].clone(), request_uri: f[4].clone(), protocol: f[5].clone(),
            scheme: f[6].clone(), server_name: f[7].clone(), server_port: ports.0,
            remote_addr: f[8].clone(), remote_port: ports.1, body, headers, environ,
        }
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode(&buf);
    }

    #[test]
    fn arbitrary_payload_with_valid_header_never_panics(
        ty in 1u8..=8, payload in proptest::collection::vec(any::<u8>(), 0..256)
    ) {
        let mut buf = vec![ty];
        buf.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        buf.extend_from_slice(&payload);
        match decode(&buf) {
            Ok(Some((_, used))) => prop_assert_eq!(used, buf.len()),
            Ok(None) => prop_assert!(false, "a complete frame must not need more bytes"),
            Err(_) => {}
        }
    }

    #[test]
    fn requests_roundtrip(req in request_strategy()) {
        let mut out = Vec::new();
        encode(&Frame::Request(req.clone()), &mut out);
        let (f, used) = decode(&out).unwrap().unwrap();
        prop_assert_eq!(used, out.len());
        prop_assert_eq!(f, Frame::Request(req));
    }

    #[test]
    fn control_frames_roundtrip(pid in any::<u32>(), requests in any::<u64>()) {
        for (f, payload) in
            [(Frame::Ready(Ready { pid }), 4), (Frame::Retire(Retire { pid, requests }), 12)]
        {
            let mut out = Vec::new();
            encode(&f, &mut out);
            prop_assert_eq!(out.len(), FRAME_HEADER_LEN + payload);
            prop_assert_eq!(decode(&out).unwrap().unwrap(), (f, out.len()));
        }
    }

    #[test]
    fn responses_roundtrip(status in any::<u16>(), reason in bytes_strategy(), headers in pairs_strategy()) {
        let f = Frame::Response(ResponseHead { status, reason, headers });
        let mut out = Vec::new();
        encode(&f, &mut out);
        prop_assert_eq!(decode(&out).unwrap().unwrap().0, f);
    }
}
