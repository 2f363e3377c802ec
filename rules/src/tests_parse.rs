#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::Path;

use super::tests::{rules, Fake, Req};
use super::*;

/// Parses `text` expecting failure; returns `(line, message)` pairs.
fn errors(text: &str) -> Vec<(usize, String)> {
    match parse_apache(text, Path::new("/etc/paddock/rules.conf")) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(diags) => diags.0.into_iter().map(|d| (d.line, d.message)).collect(),
    }
}

fn single_error(text: &str) -> (usize, String) {
    let mut all = errors(text);
    assert_eq!(all.len(), 1, "{all:?}");
    all.remove(0)
}

#[test]
fn unknown_directive_names_file_line_and_alternatives() {
    let err = parse_apache("RewriteEngine On\n\nRewriteBase /trac\n", Path::new("/etc/r.conf"));
    let diags = err.unwrap_err();
    assert_eq!(
        diags.to_string(),
        "/etc/r.conf:3: unknown directive `RewriteBase`; Paddock supports RewriteEngine, \
         RewriteCond, RewriteRule"
    );
}

#[test]
fn all_errors_are_collected_with_their_lines() {
    let text = "# comment\n\
                RewriteRule ^/a - [X]\n\
                RewriteCond %{NOPE} x\n\
                RewriteRule ^/b - [L]\n\
                RewriteRule (unclosed - [L]\n\
                RewriteEngine maybe\n";
    let all = errors(text);
    let lines: Vec<usize> = all.iter().map(|(l, _)| *l).collect();
    assert_eq!(lines, [2, 3, 5, 6], "{all:?}");
    assert!(all[0].1.contains("unknown flag `X`"), "{}", all[0].1);
    assert!(all[1].1.contains("unknown variable `%{NOPE}`"), "{}", all[1].1);
    assert!(all[2].1.contains("cannot compile regular expression `(unclosed`"), "{}", all[2].1);
    assert!(all[2].1.contains("unclosed group"), "regex error text is included: {}", all[2].1);
    assert!(all[3].1.contains("`On` or `Off`"), "{}", all[3].1);
}

#[test]
fn continuation_lines_keep_line_numbers() {
    let text =
        "RewriteCond %{HTTP_HOST} \\\n   ^example\\.org$\nRewriteRule ^/a \\\n /b [Q]\nFoo\n";
    let all = errors(text);
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(all[0].0, 3);
    assert!(all[0].1.contains("unknown flag `Q`"));
    assert_eq!(all[1], (5, unknown("Foo")));
    // A continued line parses as one directive.
    let set = rules("RewriteRule ^/a \\\n  /b\r\n");
    assert_eq!(set.len(), 1);
}

fn unknown(directive: &str) -> String {
    format!(
        "unknown directive `{directive}`; Paddock supports RewriteEngine, RewriteCond, RewriteRule"
    )
}

#[test]
fn dangling_conditions_are_errors() {
    let (line, msg) =
        single_error("RewriteRule ^ -\nRewriteCond %{HTTP_HOST} a\nRewriteCond b c\n");
    assert_eq!(line, 2);
    assert!(msg.contains("not followed by a RewriteRule"), "{msg}");
    let (line, msg) = single_error("RewriteCond %{HTTP_HOST} a [OR]\nRewriteRule ^ - [F]");
    assert_eq!(line, 1);
    assert!(msg.contains("[OR] on the last condition"), "{msg}");
}

#[test]
fn argument_and_flag_syntax_errors() {
    let cases: &[(&str, &str)] = &[
        ("RewriteRule ^/a", "at least two arguments"),
        ("RewriteRule ^/a /b [L] extra", "too many arguments"),
        ("RewriteRule ^/a /b [R=301, L]", "too many arguments"),
        ("RewriteRule ^/a /b L", "bad flag delimiters"),
        ("RewriteRule ^/a /b [L,]", "empty flag"),
        ("RewriteRule \"^/a /b", "unterminated \" quote"),
        ("RewriteRule ^/a /b [C]", "unsupported flag `C`"),
        ("RewriteRule ^/a /b [P]", "unsupported flag `P`"),
        ("RewriteRule ^/a /b [R=404]", "unsupported redirect status"),
        ("RewriteRule ^/a /b [R=soon]", "invalid redirect status"),
        ("RewriteRule ^/a - [R]", "[R] needs a substitution"),
        ("RewriteRule ^/a b/c", "must start with `/` or `http(s)://`"),
        ("RewriteRule ^/a $1 [R]", "must start with `/` or `http(s)://`"),
        ("RewriteRule ^/a /b [L=1]", "takes no value"),
        ("RewriteRule ^/a /b [E]", "needs `E=name:value`"),
        ("RewriteRule ^/a /${map:$1}", "RewriteMap lookups"),
        ("RewriteRule ^/a /%{HTTP_HOST", "unclosed `%{`"),
        ("RewriteCond %{REQUEST_FILENAME} !-f\nRewriteRule ^ -", "Paddock maps no URL to a file"),
        ("RewriteCond %{HTTP:bad/name} x\nRewriteRule ^ -", "invalid header name"),
        ("RewriteCond a -x\nRewriteRule ^ -", "unsupported CondPattern `-x`"),
        ("RewriteCond a -eqx\nRewriteRule ^ -", "not an integer"),
        ("RewriteCond a b [L]\nRewriteRule ^ -", "unsupported flag `L`"),
        ("RewriteCond expr \"true\"\nRewriteRule ^ -", "`expr` conditions"),
        ("RewriteCond a [x\nRewriteRule ^ -", "cannot compile regular expression"),
    ];
    for (text, expected) in cases {
        let (line, msg) = single_error(text);
        assert_eq!(line, 1, "{text}");
        assert!(msg.contains(expected), "{text}: {msg}");
    }
}

#[test]
fn accepted_syntax_variants() {
    // Quotes, `\ ` inside an argument, long flag names, lower-case directives, a trailing
    // comment after the flags, and F with a non-`-` substitution (Apache ignores it).
    let text = "rewriteengine on\n\
                RewriteCond \"%{HTTP:X-Foo}\" \"^a b$\" [nocase,ornext]\n\
                RewriteCond %{HTTP:X-Foo} ^c\\ d$ [NV]\n\
                RewriteRule '^/x y$' - [last,env=hit:1] # why not\n\
                RewriteRule ^/f anything [F]\n\
                RewriteRule ^/p /q [QSA,QSD,QSL,NE,NS,END,PT,nocase]";
    let set = rules(text);
    assert_eq!(set.len(), 3);
    assert_eq!(set.rules()[0].pattern(), "^/x y$");
    assert_eq!(set.rules()[0].line(), 4);
    let probe = Fake(Vec::new());
    let hit = |value: &'static str| {
        let req = Req::new(b"/x y");
        let mut req = req;
        req.headers.insert("x-foo", http::HeaderValue::from_static(value));
        set.evaluate(&req.info(), &probe).var("hit").is_some()
    };
    assert!(hit("A B"));
    assert!(hit("c d"));
    assert!(!hit("c  d"));
}

#[test]
fn toml_rules_report_the_table_line() {
    let file = Path::new("/etc/paddock.toml");
    let rule = parse_rule(
        &["%{REQUEST_URI} ^/trac/([^/]+)", "/srv/sites/%1/conf/trac.ini !-f"],
        ". - [F]",
        file,
        12,
    )
    .unwrap();
    assert_eq!((rule.line(), rule.file()), (12, file));
    let mut set = RuleSet::new(vec![rule]);
    set.extend(rules("RewriteRule ^ - [E=paddock.tenant:x]"));
    assert_eq!(set.len(), 2);
    let out = set.evaluate(&Req::new(b"/trac/a/").info(), &Fake(Vec::new()));
    assert_eq!(out.action, Action::Forbidden);
    let out = set.evaluate(&Req::new(b"/other").info(), &Fake(Vec::new()));
    assert_eq!(out.var("paddock.tenant"), Some(&b"x"[..]));

    let err = parse_rule(&["%{NOPE} x", "a b [Z]"], "^ /x [Y]", file, 7).unwrap_err();
    let text = err.to_string();
    assert_eq!(err.0.len(), 3, "{text}");
    assert!(err.0.iter().all(|d| d.line == 7 && d.file == file), "{text}");
    assert!(text.contains("conditions[0]: unknown variable"), "{text}");
    assert!(text.contains("conditions[1]: unsupported flag `Z`"), "{text}");
    assert!(text.contains("RewriteRule: unknown flag `Y`"), "{text}");
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    /// Fragments of rule syntax, so random files reach deep into the parser.
    fn rules_text() -> impl Strategy<Value = String> {
        let piece = prop::sample::select(vec![
            "RewriteRule ",
            "RewriteCond ",
            "RewriteEngine ",
            "On",
            "\n",
            "\\\n",
            " ",
            "\"",
            "'",
            "[",
            "]",
            ",",
            "=",
            "!",
            "-f",
            "-d",
            "%{",
            "}",
            "%1",
            "$1",
            "^/(.*)",
            "/x",
            "-",
            "F",
            "R=301",
            "E=a:",
            "OR",
            "NC",
            "HTTP:",
            "ENV:",
            "REQUEST_URI",
            "é",
            "#",
            "\\ ",
        ]);
        prop::collection::vec(piece, 0..40).prop_map(|p| p.concat())
    }

    proptest! {
        #[test]
        fn parsing_never_panics(text in prop_oneof![rules_text(), any::<String>()]) {
            let _ = parse_apache(&text, Path::new("r"));
        }

        #[test]
        fn evaluation_never_panics_and_rewrites_stay_normalised(
            path in prop::collection::vec(any::<u8>(), 0..40),
            header in "[ -~]{0,20}",
        ) {
            let set = rules(
                "RewriteCond %{HTTP:X-Foo} ^(.*)$\n\
                 RewriteRule ^/(.*)$ /t/%1/$1?q=$1 [QSA,E=v:%1$1]\n\
                 RewriteRule ^/t/(.*)$ /r/$1 [R=301]",
            );
            let mut req = Req::new(&path);
            if let Ok(value) = http::HeaderValue::from_str(&header) {
                req.headers.insert("x-foo", value);
            }
            let out = set.evaluate(&req.info(), &Fake(Vec::new()));
            if out.path != path {
                prop_assert!(out.path.starts_with(b"/"));
                prop_assert_eq!(crate::path::normalise(&out.path), out.path.clone());
            }
            if let Action::Redirect { location, .. } = &out.action {
                prop_assert!(http::HeaderValue::from_bytes(location).is_ok());
            }
        }
    }
}

/// Found by the `config` fuzz target: ~300 stacked repetition operators were within the regex
/// crate's nest limit and overflowed the stack of a test thread while compiling. Now refused
/// with the rule's line, on the same 2 MiB stack.
#[test]
fn deeply_stacked_repetitions_are_refused_not_compiled() {
    let pattern = format!("^H{}", "?+".repeat(150));
    let text = format!("RewriteRule {pattern} - [F]\n");
    let refused = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || errors(&text))
        .expect("thread")
        .join()
        .expect("no stack overflow");
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].0, 1);
    assert!(refused[0].1.contains("cannot compile regular expression"), "{refused:?}");
    // A pattern nested as deep as real rules go still compiles.
    let fine = format!("RewriteRule ^{}a{} - [F]", "(?:".repeat(20), ")+".repeat(20));
    let _ = rules(&fine);
}
