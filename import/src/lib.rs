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
