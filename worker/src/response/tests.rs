use super::*;

#[test]
fn status_lines() {
    assert_eq!(parse_status("200 OK"), Ok((200, b"OK".to_vec())));
    assert_eq!(parse_status("404 Not Found"), Ok((404, b"Not Found".to_vec())));
    assert_eq!(parse_status("204"), Ok((204, Vec::new())));
    for bad in ["", "20", "2000 OK", "OK 200", "200\tOK", "099 x", "200 a\r\nX: y"] {
        assert!(parse_status(bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn header_checks() {
    let ok = check_header("Content-Type", "text/html; charset=utf-8").expect("valid");
    assert_eq!(ok, (b"Content-Type".to_vec(), b"text/html; charset=utf-8".to_vec()));
    assert_eq!(check_header("X-Name", "caf\u{e9}").expect("latin-1").1, b"caf\xe9");
    assert!(check_header("X-Bad", "a\nb").is_err());
    assert!(check_header("X-Bad", "a\rb").is_err());
    assert!(check_header("X-Bad", "a\0b").is_err());
    assert!(check_header("X-Bad", "\u{20ac}").is_err());
    assert!(check_header("Bad Name", "x").is_err());
    assert!(check_header("Bad:Name", "x").is_err());
    assert!(check_header("", "x").is_err());
    for hop in ["Connection", "keep-alive", "Transfer-Encoding", "Upgrade", "TE"] {
        assert!(check_header(hop, "x").is_err(), "{hop} accepted");
    }
}
