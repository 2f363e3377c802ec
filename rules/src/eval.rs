//! One forward pass over the rules, in mod_rewrite's order: rule pattern, then conditions,
//! then substitution, then `E=`, then the rule's verdict.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};

use super::template::{Captures, Context};
use super::{Action, CmpOp, Cond, CondPattern, FileProbe, Outcome, RequestInfo, Rule};

/// Bytes Apache leaves alone when it escapes a redirect target (`T_OS_ESCAPE_PATH`); every
/// other byte, including `%`, `?`, `#`, spaces, controls and non-ASCII, becomes `%XX`.
const PATH_SAFE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'$')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'+')
    .remove(b'!')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b',')
    .remove(b':')
    .remove(b'@')
    .remove(b'&')
    .remove(b'=')
    .remove(b'/')
    .remove(b'~');

pub(crate) fn evaluate(rules: &[Rule], req: &RequestInfo<'_>, probe: &dyn FileProbe) -> Outcome {
    let mut out = Outcome {
        action: Action::Continue,
        path: req.path.to_vec(),
        query: req.query.to_vec(),
        vars: Vec::new(),
    };
    for rule in rules {
        let Some(rule_caps) = match_rule(rule, &out.path) else { continue };
        let Some(cond_caps) =
            check_conds(&rule.conds, rule.refs().1, req, &rule_caps, &out.vars, probe)
        else {
            continue;
        };
        let ctx = Context { req, rule: &rule_caps, cond: &cond_caps, vars: &out.vars };
        // Apache expands the substitution before the E= items, so it does not see them.
        let substituted = rule.substitution.as_ref().map(|s| s.expand(&ctx));
        for env in &rule.flags.env {
            let ctx = Context { req, rule: &rule_caps, cond: &cond_caps, vars: &out.vars };
            let item = env.expand(&ctx);
            set_env(&mut out.vars, item);
        }
        if let Some(status) = &rule.flags.status {
            out.action = status.clone();
            return out;
        }
        if let Some(new) = substituted {
            if let Some(action) = apply_substitution(rule, new, req, &mut out) {
                out.action = action;
                return out;
            }
        }
        if rule.flags.last {
            break;
        }
    }
    out
}

/// Matches the rule pattern against the current path; `None` when the rule does not apply.
fn match_rule(rule: &Rule, path: &[u8]) -> Option<Captures> {
    if rule.negate {
        // A negated pattern has no groups to offer, so skip the costlier capture search.
        return (!rule.pattern.is_match(path)).then(Captures::default);
    }
    if !rule.refs().0 {
        // Nothing reads `$N`: a match test is enough.
        return rule.pattern.is_match(path).then(Captures::default);
    }
    rule.pattern.captures(path).map(|caps| Captures::from_regex(&caps))
}

/// mod_rewrite's condition loop: AND by default; a true `[OR]` condition skips the rest of
/// its chain, a false one defers to the next. Returns the `%N` captures when all hold.
fn check_conds(
    conds: &[Cond],
    want_caps: bool,
    req: &RequestInfo<'_>,
    rule_caps: &Captures,
    vars: &[(String, Vec<u8>)],
    probe: &dyn FileProbe,
) -> Option<Captures> {
    let mut cond_caps = Captures::default();
    let mut i = 0;
    while let Some(cond) = conds.get(i) {
        let ctx = Context { req, rule: rule_caps, cond: &cond_caps, vars };
        let input = cond.test.expand(&ctx);
        let holds = test_cond(cond, &input, probe, want_caps.then_some(&mut cond_caps));
        if cond.or_next {
            if holds {
                while conds.get(i).is_some_and(|c| c.or_next) {
                    i += 1;
                }
            }
        } else if !holds {
            return None;
        }
        i += 1;
    }
    Some(cond_caps)
}

fn test_cond(
    cond: &Cond,
    input: &[u8],
    probe: &dyn FileProbe,
    caps: Option<&mut Captures>,
) -> bool {
    let matched = match &cond.pattern {
        CondPattern::Regex(re) if caps.is_none() || cond.negate => re.is_match(input),
        CondPattern::Regex(re) => match re.captures(input) {
            Some(found) => {
                // Only a non-negated match defines %N, as in Apache.
                if let Some(caps) = caps {
                    *caps = Captures::from_regex(&found);
                }
                true
            }
            None => false,
        },
        CondPattern::File(kind) => probe.test(input, *kind),
        CondPattern::Str { op, value, nocase } => op.holds(compare_str(input, value, *nocase)),
        CondPattern::Int { op, value } => op.holds(atoi(input).cmp(value)),
    };
    matched != cond.negate
}

impl CmpOp {
    fn holds(self, ord: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::{Equal, Greater, Less};
        match self {
            CmpOp::Eq => ord == Equal,
            CmpOp::Lt => ord == Less,
            CmpOp::Le => ord != Greater,
            CmpOp::Gt => ord == Greater,
            CmpOp::Ge => ord != Less,
        }
    }
}

/// Apache's `compare_lexicography`: a longer string is greater whatever its bytes; with `NC`,
/// `strcasecmp` ordering instead.
fn compare_str(a: &[u8], b: &[u8], nocase: bool) -> std::cmp::Ordering {
    if nocase {
        let lower = |s: &[u8]| s.to_ascii_lowercase();
        lower(a).cmp(&lower(b))
    } else {
        a.len().cmp(&b.len()).then_with(|| a.cmp(b))
    }
}

/// C's `atoi`: optional spaces and sign, then digits; anything else ends the number.
fn atoi(input: &[u8]) -> i64 {
    let trimmed = input.trim_ascii_start();
    let (sign, digits) = match trimmed.split_first() {
        Some((b'-', rest)) => (-1, rest),
        Some((b'+', rest)) => (1, rest),
        _ => (1, trimmed),
    };
    let value = digits
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .fold(0i64, |acc, &d| acc.saturating_mul(10).saturating_add(i64::from(d - b'0')));
    sign * value
}

/// Sets or (`E=!name`) unsets a variable from an expanded `name:value`.
fn set_env(vars: &mut Vec<(String, Vec<u8>)>, item: Vec<u8>) {
    if let Some(name) = item.strip_prefix(b"!") {
        let name = String::from_utf8_lossy(name);
        vars.retain(|(n, _)| !n.eq_ignore_ascii_case(&name));
        return;
    }
    let (name, value) = match item.iter().position(|&b| b == b':') {
        Some(colon) => (&item[..colon], item[colon + 1..].to_vec()),
        None => (&item[..], Vec::new()),
    };
    let name = String::from_utf8_lossy(name).into_owned();
    match vars.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(&name)) {
        Some(slot) => slot.1 = value,
        None => vars.push((name, value)),
    }
}

/// Applies an expanded substitution: splits off its query (Apache's `splitout_queryargs`), then
/// either redirects or rewrites the path for the rules that follow.
fn apply_substitution(
    rule: &Rule,
    new: Vec<u8>,
    req: &RequestInfo<'_>,
    out: &mut Outcome,
) -> Option<Action> {
    let flags = &rule.flags;
    if flags.qs_discard {
        out.query.clear();
    }
    let split = if flags.qs_last {
        new.iter().rposition(|&b| b == b'?')
    } else {
        new.iter().position(|&b| b == b'?')
    };
    let path = match split {
        Some(q) => {
            let added = &new[q + 1..];
            if !flags.qs_append {
                out.query = added.to_vec();
            } else if !added.is_empty() {
                let mut query = added.to_vec();
                query.push(b'&');
                query.extend_from_slice(&out.query);
                out.query = query;
            }
            if out.query.last() == Some(&b'&') {
                out.query.pop();
            }
            &new[..q]
        }
        None => &new[..],
    };
    let absolute = scheme_len(path).is_some();
    match flags.redirect.or(absolute.then_some(302)) {
        Some(status) => {
            let escape = !flags.no_escape;
            let location = location(path, &out.query, escape, req.query);
            Some(Action::Redirect { status, location })
        }
        None => {
            out.path = crate::path::normalise(path);
            None
        }
    }
}

/// Length of `http://` or `https://` at the start of `s`, compared case-insensitively.
fn scheme_len(s: &[u8]) -> Option<usize> {
    [&b"http://"[..], b"https://"]
        .into_iter()
        .find(|scheme| s.len() >= scheme.len() && s[..scheme.len()].eq_ignore_ascii_case(scheme))
        .map(<[u8]>::len)
}

/// Builds a `Location` value as Apache does: the path part escaped unless `NE`; the query
/// escaped unless `NE` or unchanged from the request. A final pass escapes whatever cannot
/// appear in a header value, so even `NE` cannot inject a line break.
fn location(target: &[u8], query: &[u8], escape: bool, original_query: &[u8]) -> Vec<u8> {
    let authority_end = scheme_len(target).map_or(0, |start| {
        let rest = &target[start..];
        start + rest.iter().position(|&b| b == b'/').unwrap_or(rest.len())
    });
    let (head, path) = target.split_at(authority_end);
    let mut out = head.to_vec();
    push_escaped(&mut out, path, escape);
    if !query.is_empty() {
        out.push(b'?');
        push_escaped(&mut out, query, escape && query != original_query);
    }
    out.iter().fold(Vec::with_capacity(out.len()), |mut safe, &b| {
        if b <= b' ' || b >= 0x7f {
            safe.extend_from_slice(format!("%{b:02X}").as_bytes());
        } else {
            safe.push(b);
        }
        safe
    })
}

fn push_escaped(out: &mut Vec<u8>, bytes: &[u8], escape: bool) {
    if escape {
        let encoded = percent_encoding::percent_encode(bytes, PATH_SAFE).to_string();
        out.extend_from_slice(encoded.as_bytes());
    } else {
        out.extend_from_slice(bytes);
    }
}
