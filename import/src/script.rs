//! Is a `.wsgi` script the stock Trac one? Such a script (mod_wsgi's "Integration With Trac"
//! page, `trac-admin deploy`) only sets where the environment is and calls
//! `trac.web.main.dispatch_request`; Paddock runs that entry point as a module app, which keeps
//! the router-served static files (a script app has none by default). Anything else in the
//! script (middleware, `sys.path` changes, other code) keeps it a script app.

use std::path::Path;
use std::sync::OnceLock;

use regex::Regex;

/// Largest script read (a stock one is a few hundred bytes).
const SCRIPT_CAP: u64 = 64 * 1024;

/// What a stock Trac script sets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TracScript {
    pub env_path: Option<String>,
    pub parent_dir: Option<String>,
    pub index_template: Option<String>,
    pub egg_cache: Option<String>,
}

/// The result of looking at a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Script {
    Trac(TracScript),
    /// Not (recognisably) the stock script: why, for the report.
    Other(String),
}

/// Look at the script at `path`.
pub fn classify(path: &Path) -> Script {
    use std::io::Read;
    let mut text = String::new();
    // Only a regular file: a FIFO or a device named in a configuration must not block or
    // feed the import without end.
    if !std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
        return Script::Other("it is not a regular file that can be read".to_string());
    }
    let read = std::fs::File::open(path)
        .and_then(|f| f.take(SCRIPT_CAP).read_to_string(&mut text).map(|_| ()));
    match read {
        Ok(()) => classify_text(&text),
        Err(e) => Script::Other(format!("cannot read it ({e})")),
    }
}

fn re(cell: &'static OnceLock<Regex>, pattern: &str) -> &'static Regex {
    cell.get_or_init(|| Regex::new(pattern).expect("built-in pattern compiles"))
}

/// Lines a stock script consists of (besides the environ assignments).
fn allowed(line: &str) -> bool {
    static ALLOWED: OnceLock<Regex> = OnceLock::new();
    re(
        &ALLOWED,
        r#"^(?:import (?:os|sys|site|trac\.web\.main)(?:, ?(?:os|sys|site))*|from trac\.web\.main import dispatch_request|from trac\.web import main|sys\.stdout = sys\.stderr|application = (?:trac\.web\.main\.|main\.)?dispatch_request|def application\(environ, start_\w+\):|return (?:trac\.web\.main\.|main\.)?dispatch_request\(environ, start_\w+\)|(?:if|elif) (?:not )?['"][\w.]+['"] (?:not )?in (?:os\.)?environ:|else:|os\.environ\[['"]PYTHON_EGG_CACHE['"]\] = (?:\\|environ\[['"]PYTHON_EGG_CACHE['"]\]|os\.path\.join\(environ\[['"][\w.]+['"]\], ['"]\.egg-cache['"]\))|os\.path\.join\(environ\[['"][\w.]+['"]\], ['"]\.egg-cache['"]\))$"#,
    )
    .is_match(line)
}

/// Classify a script's text.
pub fn classify_text(text: &str) -> Script {
    static ASSIGN: OnceLock<Regex> = OnceLock::new();
    let assign = re(
        &ASSIGN,
        r#"^(?:os\.)?environ(?:\[\s*['"]([\w.]+)['"]\s*\]\s*=\s*|\.setdefault\(\s*['"]([\w.]+)['"]\s*,\s*)['"]([^'"\\]*)['"]\s*\)?$"#,
    );
    if !text.contains("dispatch_request") {
        return Script::Other("it does not call trac.web.main.dispatch_request".to_string());
    }
    let mut t = TracScript::default();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(c) = assign.captures(line) {
            let key = c.get(1).or_else(|| c.get(2)).map_or("", |m| m.as_str());
            let value = c.get(3).map_or("", |m| m.as_str()).to_string();
            match key {
                "TRAC_ENV" | "trac.env_path" => t.env_path = Some(value),
                "TRAC_ENV_PARENT_DIR" | "trac.env_parent_dir" => t.parent_dir = Some(value),
                "TRAC_ENV_INDEX_TEMPLATE" | "trac.env_index_template" => {
                    t.index_template = Some(value)
                }
                "PYTHON_EGG_CACHE" => t.egg_cache = Some(value),
                _ => return Script::Other(format!("line {}: sets `{key}`", i + 1)),
            }
            continue;
        }
        if !allowed(line) {
            return Script::Other(format!(
                "line {} is not in the stock Trac script: `{line}`",
                i + 1
            ));
        }
    }
    if t.env_path.is_some() && t.parent_dir.is_some() {
        return Script::Other("it sets both an environment and a parent directory".to_string());
    }
    Script::Trac(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scripts_of_the_trac_page_are_recognised() {
        let site = "import os\n\nos.environ['TRAC_ENV'] = '/usr/local/trac/mysite'\nos.environ['PYTHON_EGG_CACHE'] = '/usr/local/trac/mysite/eggs'\n\nimport trac.web.main\napplication = trac.web.main.dispatch_request\n";
        assert_eq!(
            classify_text(site),
            Script::Trac(TracScript {
                env_path: Some("/usr/local/trac/mysite".into()),
                egg_cache: Some("/usr/local/trac/mysite/eggs".into()),
                ..Default::default()
            })
        );
        let parent = "import os\nos.environ[\"TRAC_ENV_PARENT_DIR\"] = \"/usr/local/trac\"\nimport trac.web.main\napplication = trac.web.main.dispatch_request\n";
        assert!(
            matches!(classify_text(parent), Script::Trac(t) if t.parent_dir.as_deref() == Some("/usr/local/trac"))
        );
        let bare = "import trac.web.main\napplication = trac.web.main.dispatch_request\n";
        assert_eq!(classify_text(bare), Script::Trac(TracScript::default()));
        let func = "import trac.web.main\ndef application(environ, start_response):\n    environ.setdefault('trac.env_parent_dir', '/srv/p')\n    return trac.web.main.dispatch_request(environ, start_response)\n";
        assert!(
            matches!(classify_text(func), Script::Trac(t) if t.parent_dir.as_deref() == Some("/srv/p"))
        );
    }

    #[test]
    fn trac_admin_deploy_output_is_recognised() {
        let deploy = r#"#!/usr/bin/python3
# -*- coding: utf-8 -*-
import os

def application(environ, start_request):
    if not 'trac.env_parent_dir' in environ:
        environ.setdefault('trac.env_path', '/srv/trac/x')
    if 'PYTHON_EGG_CACHE' in environ:
        os.environ['PYTHON_EGG_CACHE'] = environ['PYTHON_EGG_CACHE']
    elif 'trac.env_path' in environ:
        os.environ['PYTHON_EGG_CACHE'] = \
            os.path.join(environ['trac.env_path'], '.egg-cache')
    elif 'trac.env_parent_dir' in environ:
        os.environ['PYTHON_EGG_CACHE'] = \
            os.path.join(environ['trac.env_parent_dir'], '.egg-cache')
    from trac.web.main import dispatch_request
    return dispatch_request(environ, start_request)
"#;
        assert!(
            matches!(classify_text(deploy), Script::Trac(t) if t.env_path.as_deref() == Some("/srv/trac/x"))
        );
    }

    #[test]
    fn other_code_keeps_it_a_script() {
        let mw = "import trac.web.main\nfrom mymw import wrap\napplication = wrap(trac.web.main.dispatch_request)\n";
        assert!(matches!(classify_text(mw), Script::Other(w) if w.contains("line 2")));
        assert!(matches!(classify_text("def application(e, s): pass\n"), Script::Other(_)));
        assert!(
            matches!(classify(Path::new("/nonexistent/x.wsgi")), Script::Other(w) if w.contains("not a regular file"))
        );
    }
}
