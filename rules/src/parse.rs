//! Reading rules: Apache-syntax files and the argument strings of TOML `[[rules]]` tables.
//!
//! The argument splitting, flag lexing and CondPattern typing copy mod_rewrite's own parser
//! (`parseargline`, `cmd_parseflagfield`, `cmd_rewritecond`) so pasted lines mean the same
//! thing; where Apache silently accepts nonsense, we report it instead.

use std::path::Path;

use regex::bytes::{Regex, RegexBuilder};

use super::template::Template;
use super::{flags, Action, CmpOp, Cond, CondPattern, FileTest, Rule, RuleFlags, RuleSet};
use crate::diag::{Diagnostic, Diagnostics};

/// A parsed condition waiting for the rule it belongs to.
struct Pending {
    line: usize,
    cond: Option<Cond>,
}

/// Parses a rules file in Apache syntax, collecting every error with its line.
pub fn parse_apache(text: &str, file: &Path) -> Result<RuleSet, Diagnostics> {
    let mut errors = Vec::new();
    let mut rules = Vec::new();
    let mut pending: Vec<Pending> = Vec::new();
    let mut enabled = true;
    for (line, content) in logical_lines(text) {
        let content = content.trim();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let (directive, args) = content.split_once(char::is_whitespace).unwrap_or((content, ""));
        let mut error = |message: String| errors.push(Diagnostic::new(file, line, message));
        if directive.eq_ignore_ascii_case("RewriteEngine") {
            match args.trim() {
                a if a.eq_ignore_ascii_case("on") => enabled = true,
                a if a.eq_ignore_ascii_case("off") => enabled = false,
                a => error(format!("RewriteEngine takes `On` or `Off`, not `{a}`")),
            }
        } else if directive.eq_ignore_ascii_case("RewriteCond") {
            let cond = parse_cond(args).map_err(|m| error(format!("RewriteCond: {m}"))).ok();
            pending.push(Pending { line, cond });
        } else if directive.eq_ignore_ascii_case("RewriteRule") {
            let conds = std::mem::take(&mut pending);
            match finish_rule(args, conds, file, line) {
                Ok(Some(rule)) if enabled => rules.push(rule),
                Ok(_) => {}
                Err(mut diags) => errors.append(&mut diags),
            }
        } else {
            error(format!(
                "unknown directive `{directive}`; Paddock supports RewriteEngine, RewriteCond, \
                 RewriteRule"
            ));
        }
    }
    if let Some(first) = pending.first() {
        let message = "RewriteCond is not followed by a RewriteRule (conditions apply to the next \
                       rule only)";
        errors.push(Diagnostic::new(file, first.line, message));
    }
    if errors.is_empty() {
        Ok(RuleSet::new(rules))
    } else {
        Err(Diagnostics(errors))
    }
}

/// Builds one rule from TOML: each string is the argument part of a `RewriteCond` or
/// `RewriteRule` line. Every diagnostic carries `line` (the table's line in the config).
pub fn parse_rule(
    conds: &[&str],
    rule: &str,
    file: &Path,
    line: usize,
) -> Result<Rule, Diagnostics> {
    let mut errors = Vec::new();
    let pending = conds
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let cond = parse_cond(text)
                .map_err(|m| {
                    errors.push(Diagnostic::new(file, line, format!("conditions[{i}]: {m}")))
                })
                .ok();
            Pending { line, cond }
        })
        .collect();
    match finish_rule(rule, pending, file, line) {
        Ok(Some(rule)) if errors.is_empty() => Ok(rule),
        Ok(_) => Err(Diagnostics(errors)),
        Err(diags) => {
            errors.extend(diags);
            Err(Diagnostics(errors))
        }
    }
}

/// Parses a rule's arguments and attaches its conditions; `Ok(None)` when only a condition
/// was broken (already reported).
fn finish_rule(
    args: &str,
    pending: Vec<Pending>,
    file: &Path,
    line: usize,
) -> Result<Option<Rule>, Vec<Diagnostic>> {
    let mut errors = Vec::new();
    if let Some(last) = pending.last().and_then(|p| p.cond.as_ref().map(|c| (p.line, c))) {
        if last.1.or_next {
            let message = "RewriteCond: [OR] on the last condition of a rule has nothing to join";
            errors.push(Diagnostic::new(file, last.0, message));
        }
    }
    let rule = parse_rule_args(args, file, line)
        .map_err(|m| errors.push(Diagnostic::new(file, line, format!("RewriteRule: {m}"))))
        .ok();
    if !errors.is_empty() {
        return Err(errors);
    }
    let conds: Option<Vec<Cond>> = pending.into_iter().map(|p| p.cond).collect();
    Ok(rule.zip(conds).map(|(mut rule, conds)| {
        rule.conds = conds;
        rule
    }))
}

/// Joins backslash-continued lines; each logical line keeps the number of its first line.
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (index, raw) in text.split('\n').enumerate() {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        let (body, continues) = match raw.strip_suffix('\\') {
            Some(body) => (body, true),
            None => (raw, false),
        };
        let entry = current.get_or_insert_with(|| (index + 1, String::new()));
        entry.1.push_str(body);
        if !continues {
            out.extend(current.take());
        }
    }
    out.extend(current);
    out
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'\x0b' | b'\x0c')
}

/// Splits arguments as mod_rewrite's `parseargline`: `"..."`/`'...'` quoting, `\ ` keeps a
/// space inside an argument. After two arguments, `#` starts a comment.
fn split_args(line: &str) -> Result<Vec<&str>, String> {
    let bytes = line.as_bytes();
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while bytes.get(i).is_some_and(|&b| is_space(b)) {
            i += 1;
        }
        let Some(&first) = bytes.get(i) else { break };
        if first == b'#' && args.len() >= 2 {
            break;
        }
        let quote = matches!(first, b'"' | b'\'').then_some(first);
        i += usize::from(quote.is_some());
        let start = i;
        while let Some(&b) = bytes.get(i) {
            if Some(b) == quote || (quote.is_none() && is_space(b)) {
                break;
            }
            i += if b == b'\\' && bytes.get(i + 1).is_some_and(|&n| is_space(n)) { 2 } else { 1 };
        }
        let end = i.min(bytes.len());
        if let Some(q) = quote {
            if bytes.get(end) != Some(&q) {
                return Err(format!("unterminated {} quote", char::from(q)));
            }
            i += 1;
        }
        args.push(&line[start..end]);
    }
    match args.len() {
        0 | 1 => Err("at least two arguments required".to_string()),
        2 | 3 => Ok(args),
        _ => Err(format!(
            "too many arguments (`{}`); flags are one `[...]` word without spaces",
            args[3]
        )),
    }
}

/// Splits a `[A,B=c]` field into `(key, value)` pairs as `cmd_parseflagfield` does.
fn split_flags(field: &str) -> Result<Vec<(&str, Option<&str>)>, String> {
    let inner = field.strip_prefix('[').and_then(|f| f.strip_suffix(']')).ok_or_else(|| {
        format!("bad flag delimiters in `{field}`: flags must look like `[L,R=301]`")
    })?;
    inner
        .split(',')
        .map(|flag| match flag.trim() {
            "" => Err(format!("empty flag in `{field}`")),
            flag => Ok(flag.split_once('=').map_or((flag, None), |(k, v)| (k, Some(v)))),
        })
        .collect()
}

fn parse_cond(args: &str) -> Result<Cond, String> {
    let args = split_args(args)?;
    let (mut nocase, mut or_next) = (false, false);
    if let Some(field) = args.get(2) {
        for (key, _) in split_flags(field)? {
            match key.to_ascii_lowercase().as_str() {
                "nc" | "nocase" => nocase = true,
                "or" | "ornext" => or_next = true,
                "nv" | "novary" => {} // Paddock adds no Vary header, so there is nothing to skip.
                _ => return Err(format!("unsupported flag `{key}`; conditions accept NC, OR, NV")),
            }
        }
    }
    let test = Template::parse(args[0])?;
    if args[0].eq_ignore_ascii_case("expr") {
        return Err("`expr` conditions are not supported".to_string());
    }
    let (negate, text) = match args[1].strip_prefix('!') {
        Some(rest) => (true, rest),
        None => (false, args[1]),
    };
    let (pattern, flip) = cond_pattern(text, nocase)?;
    Ok(Cond { test, pattern, negate: negate != flip, or_next })
}

/// Types a CondPattern as Apache does; the bool asks to invert the result (`-ne`).
fn cond_pattern(text: &str, nocase: bool) -> Result<(CondPattern, bool), String> {
    let int = |op, rest: &str| {
        let value = rest.trim().parse::<i64>().map_err(|_| format!("`{text}`: not an integer"))?;
        Ok((CondPattern::Int { op, value }, false))
    };
    let str_cmp = |op, value: &str| {
        Ok((CondPattern::Str { op, value: value.as_bytes().to_vec(), nocase }, false))
    };
    // Apache only types patterns of two characters or more; `=` alone is a regex.
    if text.len() < 2 {
        return Ok((CondPattern::Regex(compile(text, nocase)?), false));
    }
    match text {
        "-f" => Ok((CondPattern::File(FileTest::File), false)),
        "-d" => Ok((CondPattern::File(FileTest::Dir), false)),
        "-s" => Ok((CondPattern::File(FileTest::NonEmptyFile), false)),
        "-x" | "-h" | "-l" | "-L" | "-U" | "-F" => {
            Err(format!("unsupported CondPattern `{text}`; file tests are -f, -d, -s"))
        }
        t if t.len() > 3 && t.starts_with("-eq") => int(CmpOp::Eq, &t[3..]),
        t if t.len() > 3 && t.starts_with("-ne") => int(CmpOp::Eq, &t[3..]).map(|(p, _)| (p, true)),
        t if t.len() > 3 && t.starts_with("-lt") => int(CmpOp::Lt, &t[3..]),
        t if t.len() > 3 && t.starts_with("-le") => int(CmpOp::Le, &t[3..]),
        t if t.len() > 3 && t.starts_with("-gt") => int(CmpOp::Gt, &t[3..]),
        t if t.len() > 3 && t.starts_with("-ge") => int(CmpOp::Ge, &t[3..]),
        "=\"\"" => str_cmp(CmpOp::Eq, ""),
        t if t.starts_with(">=") => str_cmp(CmpOp::Ge, &t[2..]),
        t if t.starts_with("<=") => str_cmp(CmpOp::Le, &t[2..]),
        t if t.starts_with('=') => str_cmp(CmpOp::Eq, &t[1..]),
        t if t.starts_with('>') => str_cmp(CmpOp::Gt, &t[1..]),
        t if t.starts_with('<') => str_cmp(CmpOp::Lt, &t[1..]),
        t => Ok((CondPattern::Regex(compile(t, nocase)?), false)),
    }
}

/// How deeply groups and repetitions may nest in a rule's pattern. The regex compiler
/// recurses once per level, so the crate's default (250) let a pattern of stacked repetition
/// operators (`a?++++…`, found by the `config` fuzz target) overflow a thread's stack; no real
/// rule comes near this.
pub const NEST_LIMIT: u32 = 64;

/// Compiles in byte mode without Unicode, like PCRE in Apache: `.` matches any byte but `\n`,
/// so paths that are not UTF-8 still match.
fn compile(pattern: &str, nocase: bool) -> Result<Regex, String> {
    RegexBuilder::new(pattern)
        .case_insensitive(nocase)
        .unicode(false)
        .nest_limit(NEST_LIMIT)
        .build()
        .map_err(|e| format!("cannot compile regular expression `{pattern}`: {e}"))
}

fn parse_rule_args(args: &str, file: &Path, line: usize) -> Result<Rule, String> {
    let args = split_args(args)?;
    let mut rule_flags = RuleFlags::default();
    let mut nocase = false;
    if let Some(field) = args.get(2) {
        for (key, value) in split_flags(field)? {
            flags::apply(&mut rule_flags, &mut nocase, key, value)?;
        }
    }
    let (negate, pattern) = match args[0].strip_prefix('!') {
        Some(rest) => (true, rest),
        None => (false, args[0]),
    };
    let pattern = compile(pattern, nocase)?;
    let substitution = match args[1] {
        "-" => None,
        text => Some(Template::parse(text)?),
    };
    check_substitution(args[1], substitution.as_ref(), &rule_flags)?;
    let file = file.to_path_buf();
    Ok(Rule {
        file,
        line,
        pattern,
        negate,
        conds: Vec::new(),
        substitution,
        flags: rule_flags,
        refs: std::sync::OnceLock::new(),
    })
}

/// Refuses substitutions whose meaning would depend on a filesystem mapping Paddock lacks.
fn check_substitution(text: &str, subst: Option<&Template>, f: &RuleFlags) -> Result<(), String> {
    if matches!(f.status, Some(Action::Forbidden | Action::Gone)) {
        return Ok(()); // Apache ignores the substitution of F and G rules.
    }
    let Some(subst) = subst else {
        return match f.redirect {
            Some(_) => Err("[R] needs a substitution, not `-`".to_string()),
            None => Ok(()),
        };
    };
    let prefix = subst.literal_prefix().to_ascii_lowercase();
    if prefix.starts_with(b"/") || prefix.starts_with(b"http://") || prefix.starts_with(b"https://")
    {
        return Ok(());
    }
    Err(format!(
        "substitution `{text}` must start with `/` or `http(s)://` (or be `-`); Paddock has no \
         document root to resolve a relative path against"
    ))
}
