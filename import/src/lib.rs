//! `paddock import-apache`: an Apache + mod_wsgi configuration to a Paddock one.
//!
//! [`load`] reads the files as httpd would (`Include`, `Define`, sections), [`translate`]
//! maps what it understands to a [`model::Model`] and a rules file, and every directive it
//! does not translate (or translates with a difference) becomes a [`report::Note`] with its
//! `file:line`. [`Import::write`] writes `paddock.toml`, `paddock.rules` and
//! `import-report.txt`, then loads the written configuration with `paddock-config` so that
//! what was produced is known to be accepted.

pub mod conf;
pub mod load;
pub mod model;
pub mod report;
pub mod script;
pub mod translate;

use std::path::{Path, PathBuf};

pub use load::LoadError;
pub use report::{Kind, Note};

/// File names written into the output directory.
pub const CONFIG_FILE: &str = "paddock.toml";
pub const RULES_FILE: &str = "paddock.rules";
pub const REPORT_FILE: &str = "import-report.txt";

/// A translated configuration.
#[derive(Debug)]
pub struct Import {
    pub inputs: Vec<PathBuf>,
    /// Every file read (the inputs and what they include).
    pub files_read: Vec<PathBuf>,
    pub toml: String,
    pub rules: String,
    pub notes: Vec<Note>,
}

/// Read and translate `files`; an error only when a file cannot be read or does not parse.
pub fn import(files: &[PathBuf]) -> Result<Import, LoadError> {
    let loaded = load::load(files)?;
    Ok(from_loaded(files, loaded))
}

/// Translate an already read configuration.
pub fn from_loaded(files: &[PathBuf], loaded: load::Loaded) -> Import {
    let files_read = loaded.files.clone();
    let out = translate::translate(&loaded);
    let mut header = vec!["Made by `paddock import-apache` from:".to_string()];
    header.extend(files.iter().map(|f| format!("  {}", f.display())));
    header.push("What was not translated, and why: import-report.txt. Check with `paddock check paddock.toml`.".to_string());
    header.push(String::new());
    let mut model = out.model;
    model.header = header;
    Import {
        inputs: files.to_vec(),
        files_read,
        toml: model.to_toml(),
        rules: out.rules,
        notes: out.notes,
    }
}

impl Import {
    /// The report's text.
    pub fn report(&self) -> String {
        report::render(&self.notes, &self.inputs)
    }

    /// The one-line summary.
    pub fn summary(&self) -> String {
        report::summary(&self.notes)
    }

    /// Write the three files into `dir` (made if missing), then load the configuration with
    /// `paddock-config`: its errors, if it refuses it (each `file:line: message`).
    pub fn write(&self, dir: &Path) -> std::io::Result<Vec<String>> {
        std::fs::create_dir_all(dir)?;
        let config = dir.join(CONFIG_FILE);
        std::fs::write(&config, &self.toml)?;
        let rules = dir.join(RULES_FILE);
        if self.rules.is_empty() {
            if rules.exists() {
                std::fs::remove_file(&rules)?;
            }
        } else {
            std::fs::write(&rules, &self.rules)?;
        }
        std::fs::write(dir.join(REPORT_FILE), self.report())?;
        Ok(validate(&config))
    }
}

/// Errors `paddock-config` finds in the written configuration (none when it loads).
pub fn validate(config: &Path) -> Vec<String> {
    match paddock_config::Config::load(config, &paddock_config::Overrides::default()) {
        Ok(_) => Vec::new(),
        Err(d) => d.to_string().lines().map(str::to_string).collect(),
    }
}

/// Everything the import does with `text` read as a configuration file (no file it names is
/// included), checking what must hold for any input: no panic, every directive's line is a
/// line of the text starting with its name, the TOML written parses, and so do the rules.
/// The fuzz target and the property test call it.
pub fn check_text(text: &str) {
    let file = Path::new("fuzz.conf");
    if let Ok(parsed) = conf::parse(text, file) {
        let lines: Vec<&str> = text.lines().collect();
        fn walk(ds: &[conf::Directive], lines: &[&str]) {
            for d in ds {
                // The logical line starting there (continued lines joined).
                let mut text = String::new();
                for l in lines.iter().skip(d.line.wrapping_sub(1)) {
                    let l = l.strip_suffix('\r').unwrap_or(l);
                    match l.strip_suffix('\\') {
                        Some(body) => text.push_str(body),
                        None => {
                            text.push_str(l);
                            break;
                        }
                    }
                }
                let t = text.trim_start();
                let t = t.strip_prefix('<').unwrap_or(t);
                assert!(
                    d.line >= 1 && d.line <= lines.len() && t.starts_with(d.name.as_str()),
                    "{} names line {} which does not start with it",
                    d.name,
                    d.line
                );
                walk(d.children.as_deref().unwrap_or(&[]), lines);
            }
        }
        walk(&parsed, &lines);
    }
    let Ok(loaded) = load::load_text(text, file, Path::new("/nonexistent")) else { return };
    let imported = from_loaded(&[file.to_path_buf()], loaded);
    if let Err(e) = imported.toml.parse::<toml_edit::DocumentMut>() {
        panic!("the TOML written does not parse: {e}\n{}", imported.toml);
    }
    if !imported.rules.is_empty() {
        if let Err(e) = paddock_rules::parse_apache(&imported.rules, Path::new("paddock.rules")) {
            panic!("the rules written do not parse: {e}\n{}", imported.rules);
        }
    }
    let _ = imported.report();
}

#[cfg(test)]
mod proptests {
    use proptest::prelude::*;

    /// Pieces real configurations are made of, and some that break them.
    fn fragment() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("WSGIScriptAlias /trac /srv/x.wsgi".to_string()),
            Just("WSGIScriptAliasMatch ^/trac/([^/]+) /srv/trac.wsgi".to_string()),
            Just(
                "WSGIDaemonProcess a processes=2 threads=x umask=0777 python-path=/a:/b"
                    .to_string()
            ),
            Just("WSGIProcessGroup %{ENV:trac.process_group}".to_string()),
            Just("RewriteEngine On".to_string()),
            Just("RewriteCond %{REQUEST_URI} ^/trac/([^/]+)".to_string()),
            Just("RewriteRule . - [E=trac.process_group:%1,E=trac.env_path:/s/%1]".to_string()),
            Just("RewriteRule ^(.*$ - [Q]".to_string()),
            Just("<VirtualHost *:80>".to_string()),
            Just("</VirtualHost>".to_string()),
            Just("<LocationMatch ^/trac/[^/]+/login>".to_string()),
            Just("</LocationMatch>".to_string()),
            Just("<Location /trac/login>".to_string()),
            Just("</Location>".to_string()),
            Just("AuthType Basic".to_string()),
            Just("AuthUserFile /x".to_string()),
            Just("Require valid-user".to_string()),
            Just("ServerName a.example".to_string()),
            Just("Alias /trac/chrome/common /h".to_string()),
            Just("SetEnv trac.env_path \"/a b\"".to_string()),
            Just("Define X /y".to_string()),
            Just("Include ${X}/*.conf".to_string()),
            Just("# comment \\".to_string()),
            Just("  \\".to_string()),
            "[ -~]{0,30}".prop_map(|s| s),
            "\\PC{0,12}".prop_map(|s| s),
        ]
    }

    proptest! {
        #[test]
        fn any_text_is_imported_without_panic_and_keeps_its_lines(
            lines in proptest::collection::vec(fragment(), 0..24)
        ) {
            super::check_text(&lines.join("\n"));
        }
    }
}
