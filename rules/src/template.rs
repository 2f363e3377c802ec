//! Test strings, substitutions and `E=` values: text with `$N`, `%N` and `%{VAR}` in it.
//!
//! Parsed once at load time so that an unknown variable is a config error rather than, as in
//! Apache, a silent empty string, and so that evaluation does no string scanning.

use http::HeaderName;

use super::RequestInfo;

/// Apache keeps back-references `$0`..`$9` and `%0`..`%9` only.
const MAX_REFS: usize = 10;

/// A parsed expandable string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(Vec<u8>),
    /// `$N`: group N of the rule pattern.
    RuleRef(usize),
    /// `%N`: group N of the last matched regex condition.
    CondRef(usize),
    Var(Var),
}

/// A `%{...}` server variable.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Var {
    RequestUri,
    QueryString,
    RequestMethod,
    HttpHost,
    Header(HeaderName),
    Env(String),
    RemoteAddr,
    Https,
    RequestScheme,
    ServerName,
    ServerPort,
}

/// Back-reference values, copied out of the subject so the path may change afterwards.
#[derive(Debug, Clone, Default)]
pub(crate) struct Captures(Vec<Vec<u8>>);

/// Everything an expansion may read.
pub(crate) struct Context<'a> {
    pub req: &'a RequestInfo<'a>,
    pub rule: &'a Captures,
    pub cond: &'a Captures,
    pub vars: &'a [(String, Vec<u8>)],
}

impl Captures {
    pub fn from_regex(caps: &regex::bytes::Captures<'_>) -> Self {
        let groups = caps.iter().take(MAX_REFS);
        Captures(groups.map(|g| g.map(|m| m.as_bytes().to_vec()).unwrap_or_default()).collect())
    }

    fn get(&self, n: usize) -> &[u8] {
        self.0.get(n).map_or(&[], Vec::as_slice)
    }
}

impl Template {
    /// Whether expanding this reads `$N` (rule groups) or `%N` (condition groups).
    pub fn refs(&self) -> (bool, bool) {
        let rule = self.parts.iter().any(|p| matches!(p, Part::RuleRef(_)));
        let cond = self.parts.iter().any(|p| matches!(p, Part::CondRef(_)));
        (rule, cond)
    }

    /// Parses Apache's expansion syntax: `\c` is a literal `c`; `$N`, `%N`; `%{VAR}`.
    /// `%` or `$` followed by anything else is literal, as in Apache.
    pub fn parse(text: &str) -> Result<Template, String> {
        let bytes = text.as_bytes();
        let mut parts = Vec::new();
        let mut literal = Vec::new();
        let mut i = 0;
        while let Some(&b) = bytes.get(i) {
            let next = bytes.get(i + 1).copied();
            let part = match (b, next) {
                (b'\\', Some(c)) => {
                    literal.push(c);
                    i += 2;
                    continue;
                }
                (b'$' | b'%', Some(d)) if d.is_ascii_digit() => {
                    let n = usize::from(d - b'0');
                    i += 2;
                    if b == b'$' {
                        Part::RuleRef(n)
                    } else {
                        Part::CondRef(n)
                    }
                }
                (b'$' | b'%', Some(b'{')) => {
                    let Some(len) = bytes[i + 2..].iter().position(|&c| c == b'}') else {
                        return Err(format!("unclosed `{}{{` in `{text}`", char::from(b)));
                    };
                    let name = &text[i + 2..i + 2 + len];
                    i += len + 3;
                    if b == b'$' {
                        return Err(format!(
                            "RewriteMap lookups (`${{{name}}}`) are not supported by Paddock"
                        ));
                    }
                    Part::Var(Var::parse(name)?)
                }
                _ => {
                    literal.push(b);
                    i += 1;
                    continue;
                }
            };
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal)));
            }
            parts.push(part);
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Template { parts })
    }

    /// The leading literal text, used to check substitutions at load time.
    pub fn literal_prefix(&self) -> &[u8] {
        match self.parts.first() {
            Some(Part::Literal(l)) => l,
            _ => &[],
        }
    }

    pub fn expand(&self, ctx: &Context<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        for part in &self.parts {
            match part {
                Part::Literal(l) => out.extend_from_slice(l),
                Part::RuleRef(n) => out.extend_from_slice(ctx.rule.get(*n)),
                Part::CondRef(n) => out.extend_from_slice(ctx.cond.get(*n)),
                Part::Var(var) => var.append_to(&mut out, ctx),
            }
        }
        out
    }
}

/// The names Paddock knows, for the error message about an unknown one.
const KNOWN: &str = "REQUEST_URI, QUERY_STRING, REQUEST_METHOD, HTTP_HOST, HTTP_USER_AGENT, \
     HTTP_REFERER, HTTP_COOKIE, HTTP_ACCEPT, HTTP_FORWARDED, HTTP:Header-Name, ENV:name, \
     REMOTE_ADDR, HTTPS, REQUEST_SCHEME, SERVER_NAME, SERVER_PORT";

impl Var {
    fn parse(name: &str) -> Result<Var, String> {
        // Apache matches the `ENV:`/`HTTP:` prefixes case-insensitively, plain names exactly.
        if let Some((prefix, rest)) = name.split_once(':') {
            if prefix.eq_ignore_ascii_case("ENV") && !rest.is_empty() {
                return Ok(Var::Env(rest.to_string()));
            }
            if prefix.eq_ignore_ascii_case("HTTP") {
                return HeaderName::from_bytes(rest.as_bytes())
                    .map(Var::Header)
                    .map_err(|_| format!("invalid header name in `%{{{name}}}`"));
            }
        }
        let header = |h: &'static str| Ok(Var::Header(HeaderName::from_static(h)));
        match name {
            "REQUEST_URI" => Ok(Var::RequestUri),
            "QUERY_STRING" => Ok(Var::QueryString),
            "REQUEST_METHOD" => Ok(Var::RequestMethod),
            "HTTP_HOST" => Ok(Var::HttpHost),
            "HTTP_USER_AGENT" => header("user-agent"),
            "HTTP_REFERER" => header("referer"),
            "HTTP_COOKIE" => header("cookie"),
            "HTTP_ACCEPT" => header("accept"),
            "HTTP_FORWARDED" => header("forwarded"),
            "REMOTE_ADDR" => Ok(Var::RemoteAddr),
            "HTTPS" => Ok(Var::Https),
            "REQUEST_SCHEME" => Ok(Var::RequestScheme),
            "SERVER_NAME" => Ok(Var::ServerName),
            "SERVER_PORT" => Ok(Var::ServerPort),
            "REQUEST_FILENAME" | "SCRIPT_FILENAME" | "DOCUMENT_ROOT" => Err(format!(
                "`%{{{name}}}` is not supported: Paddock maps no URL to a file; \
                 test a path under the sites directory instead"
            )),
            _ => Err(format!("unknown variable `%{{{name}}}`; Paddock knows {KNOWN}")),
        }
    }

    fn append_to(&self, out: &mut Vec<u8>, ctx: &Context<'_>) {
        let req = ctx.req;
        match self {
            Var::RequestUri => out.extend_from_slice(req.path),
            Var::QueryString => out.extend_from_slice(req.query),
            Var::RequestMethod => out.extend_from_slice(req.method),
            Var::HttpHost => out.extend_from_slice(req.host),
            Var::Header(name) => {
                // Apache merges repeated request headers into one comma-separated value.
                for (i, value) in req.headers.get_all(name).iter().enumerate() {
                    if i > 0 {
                        out.extend_from_slice(b", ");
                    }
                    out.extend_from_slice(value.as_bytes());
                }
            }
            Var::Env(name) => {
                let found = ctx.vars.iter().find(|(n, _)| n.eq_ignore_ascii_case(name));
                out.extend_from_slice(found.map_or(&[][..], |(_, v)| v));
            }
            Var::RemoteAddr => out.extend_from_slice(req.remote_addr),
            Var::Https => out.extend_from_slice(if req.https { b"on" } else { b"off" }),
            Var::RequestScheme => out.extend_from_slice(if req.https { b"https" } else { b"http" }),
            Var::ServerName => out.extend_from_slice(req.server_name),
            Var::ServerPort => out.extend_from_slice(req.server_port.to_string().as_bytes()),
        }
    }
}
