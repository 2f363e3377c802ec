//! The PEP 3333 environ of one request.
//!
//! Header and path bytes become `str` one latin-1 character per byte, as PEP 3333 requires, so
//! the application sees exactly the bytes the client sent. Environ extras chosen by the router
//! (`trac.env_path`, `REMOTE_USER`, ...) are UTF-8 text and are decoded as such.

use std::collections::HashMap;

use paddock_proto::RequestHead;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};

/// Environ values that are the same for every request of the process.
pub struct Statics {
    pub version: Py<PyTuple>,
    pub errors: Py<PyAny>,
    pub file_wrapper: Py<PyAny>,
    pub multithread: bool,
    pub multiprocess: bool,
}

/// Request headers as CGI variables: `(key, value bytes)`, duplicates joined.
///
/// Names holding `_` (or anything that is not an HTTP token) are dropped, as Apache does, so a
/// client cannot send `X_Forwarded_For` to pose as the router's `X-Forwarded-For`.
pub fn header_entries(headers: &[(Vec<u8>, Vec<u8>)]) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::with_capacity(headers.len());
    let mut index: HashMap<String, usize> = HashMap::with_capacity(headers.len());
    for (name, value) in headers {
        let Some(key) = cgi_key(name) else { continue };
        match index.get(&key) {
            Some(&i) => {
                let sep: &[u8] = if key == "HTTP_COOKIE" { b"; " } else { b", " };
                out[i].1.extend_from_slice(sep);
                out[i].1.extend_from_slice(value);
            }
            None => {
                index.insert(key.clone(), out.len());
                out.push((key, value.clone()));
            }
        }
    }
    out
}

/// `Content-Type` -> `CONTENT_TYPE`, `X-Foo` -> `HTTP_X_FOO`; `None` for a name to drop.
fn cgi_key(name: &[u8]) -> Option<String> {
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b) && b != b'_') {
        return None;
    }
    // One allocation: this runs for every header of every request.
    let mut key = String::with_capacity(5 + name.len());
    if !name.eq_ignore_ascii_case(b"content-type") && !name.eq_ignore_ascii_case(b"content-length")
    {
        key.push_str("HTTP_");
    }
    key.extend(name.iter().map(|&b| if b == b'-' { '_' } else { b.to_ascii_uppercase() as char }));
    Some(key)
}

/// A CGI key as a Python `str`. The names browsers send with every request are interned: no
/// new string per request, and the app's `environ['HTTP_HOST']` finds them by identity.
fn cgi_key_str<'py>(py: Python<'py>, key: &str) -> Bound<'py, PyString> {
    macro_rules! interned {
        ($($name:literal),* $(,)?) => {
            match key {
                $($name => intern!(py, $name).clone(),)*
                _ => PyString::new(py, key),
            }
        };
    }
    interned!(
        "HTTP_HOST",
        "HTTP_USER_AGENT",
        "HTTP_ACCEPT",
        "HTTP_ACCEPT_LANGUAGE",
        "HTTP_ACCEPT_ENCODING",
        "HTTP_REFERER",
        "HTTP_COOKIE",
        "HTTP_CONNECTION",
        "HTTP_CACHE_CONTROL",
        "HTTP_PRAGMA",
        "HTTP_ORIGIN",
        "HTTP_DNT",
        "HTTP_PRIORITY",
        "HTTP_AUTHORIZATION",
        "HTTP_IF_MODIFIED_SINCE",
        "HTTP_IF_NONE_MATCH",
        "HTTP_UPGRADE_INSECURE_REQUESTS",
        "HTTP_SEC_FETCH_DEST",
        "HTTP_SEC_FETCH_MODE",
        "HTTP_SEC_FETCH_SITE",
        "HTTP_SEC_FETCH_USER",
        "HTTP_X_REQUESTED_WITH",
        "HTTP_X_FORWARDED_FOR",
        "HTTP_X_FORWARDED_PROTO",
        "CONTENT_TYPE",
        "CONTENT_LENGTH",
    )
}

/// RFC 9110 token character.
pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Bytes as a `str` with one character per byte (ISO-8859-1).
pub fn latin1<'py>(py: Python<'py>, b: &[u8]) -> Bound<'py, PyString> {
    match std::str::from_utf8(b) {
        Ok(s) if b.is_ascii() => PyString::new(py, s),
        _ => PyString::new(py, &latin1_string(b)),
    }
}

fn latin1_string(b: &[u8]) -> String {
    b.iter().map(|&c| c as char).collect()
}

/// Router-provided text: UTF-8, or latin-1 when it is not valid UTF-8.
fn text<'py>(py: Python<'py>, b: &[u8]) -> Bound<'py, PyString> {
    match std::str::from_utf8(b) {
        Ok(s) => PyString::new(py, s),
        Err(_) => PyString::new(py, &latin1_string(b)),
    }
}

/// Build the environ dict for `head`, with `input` as `wsgi.input`.
pub fn build<'py>(
    py: Python<'py>,
    statics: &Statics,
    head: &RequestHead,
    input: Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyDict>> {
    let env = PyDict::new(py);
    for (key, value) in header_entries(&head.headers) {
        env.set_item(cgi_key_str(py, &key), latin1(py, &value))?;
    }
    let cgi: [(&Bound<'py, PyString>, &[u8]); 9] = [
        (intern!(py, "REQUEST_METHOD"), &head.method),
        (intern!(py, "SCRIPT_NAME"), &head.script_name),
        (intern!(py, "PATH_INFO"), &head.path_info),
        (intern!(py, "QUERY_STRING"), &head.query_string),
        (intern!(py, "REQUEST_URI"), &head.request_uri),
        (intern!(py, "SERVER_NAME"), &head.server_name),
        (intern!(py, "SERVER_PROTOCOL"), &head.protocol),
        (intern!(py, "REMOTE_ADDR"), &head.remote_addr),
        (intern!(py, "wsgi.url_scheme"), scheme(&head.scheme)),
    ];
    for (key, value) in cgi {
        env.set_item(key, latin1(py, value))?;
    }
    env.set_item(intern!(py, "SERVER_PORT"), head.server_port.to_string())?;
    env.set_item(intern!(py, "REMOTE_PORT"), head.remote_port.to_string())?;
    env.set_item(intern!(py, "wsgi.version"), statics.version.bind(py))?;
    env.set_item(intern!(py, "wsgi.input"), input)?;
    env.set_item(intern!(py, "wsgi.errors"), statics.errors.bind(py))?;
    env.set_item(intern!(py, "wsgi.multithread"), statics.multithread)?;
    env.set_item(intern!(py, "wsgi.multiprocess"), statics.multiprocess)?;
    env.set_item(intern!(py, "wsgi.run_once"), false)?;
    env.set_item(intern!(py, "wsgi.input_terminated"), true)?;
    env.set_item(intern!(py, "wsgi.file_wrapper"), statics.file_wrapper.bind(py))?;
    // Last, so the router's decisions (REMOTE_USER, trac.env_path) win over anything above.
    for (key, value) in &head.environ {
        env.set_item(text(py, key), text(py, value))?;
    }
    Ok(env)
}

/// PEP 3333 allows only `http` and `https`; anything else from the router means plain http.
fn scheme(s: &[u8]) -> &'static [u8] {
    if s.eq_ignore_ascii_case(b"https") {
        b"https"
    } else {
        b"http"
    }
}

#[cfg(test)]
mod tests;
