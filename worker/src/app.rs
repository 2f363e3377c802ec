//! Python set-up and loading of the WSGI application.

use std::path::{Path, PathBuf};

use pyo3::exceptions::{PyFileNotFoundError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{IntoPyDict, PyDict, PyList, PyTuple};

use crate::environ::Statics;

/// Where the application comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// `package.module:callable.attr` (callable defaults to `application`).
    Module { module: String, attrs: Vec<String> },
    /// A script file (`.wsgi`/`.py`, or any path with a `/`) defining `application`.
    Script(PathBuf),
}

impl Entry {
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.contains('/') || s.ends_with(".wsgi") || s.ends_with(".py") {
            return Ok(Entry::Script(PathBuf::from(s)));
        }
        let (module, callable) = s.split_once(':').unwrap_or((s, "application"));
        let attrs: Vec<String> = callable.split('.').map(str::to_owned).collect();
        let bad = |p: &str| p.is_empty() || p.chars().any(char::is_whitespace);
        if bad(module) || module.split('.').any(bad) || attrs.iter().any(|a| bad(a)) {
            return Err(format!("invalid app entry {s:?}: expected package.module:callable"));
        }
        Ok(Entry::Module { module: module.to_owned(), attrs })
    }
}

/// Module name for a script file, unique per path as mod_wsgi does, so two scripts with the
/// same file name never share a module.
pub fn script_module_name(path: &Path) -> String {
    // FNV-1a: stable across runs and Rust versions, unlike `DefaultHasher`.
    let hash =
        path.as_os_str().as_encoded_bytes().iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    format!("_paddock_wsgi_{hash:016x}")
}

/// Prepare the interpreter: `sys.argv`, stdout, stack dumps, the virtualenv and the python
/// path.
pub fn setup_python(py: Python<'_>, python_path: &[PathBuf], venv: Option<&Path>) -> PyResult<()> {
    let sys = py.import("sys")?;
    sys.setattr("argv", PyList::new(py, ["paddock-worker"])?)?;
    // As mod_wsgi does: stdout is not ours to write to, but print() must still work.
    sys.setattr("stdout", sys.getattr("stderr")?)?;
    register_stack_dumps(py)?;
    let path = sys.getattr("path")?.cast_into::<PyList>()?;
    if let Some(venv) = venv {
        let version = sys.getattr("version_info")?;
        let major: u8 = version.getattr("major")?.extract()?;
        let minor: u8 = version.getattr("minor")?.extract()?;
        let site_dir = venv.join(format!("lib/python{major}.{minor}/site-packages"));
        if !site_dir.is_dir() {
            return Err(PyFileNotFoundError::new_err(format!(
                "virtualenv {}: no {}",
                venv.display(),
                site_dir.display()
            )));
        }
        let before: Vec<Bound<'_, PyAny>> = path.iter().collect();
        py.import("site")?.call_method1("addsitedir", (site_dir.as_os_str(),))?;
        // addsitedir appends; the venv must win over system packages, so move its entries
        // (and any added by its .pth files) to the front.
        let mut added = Vec::new();
        for p in path.iter() {
            if !before.iter().any(|b| b.eq(&p).unwrap_or(false)) {
                added.push(p);
            }
        }
        let reordered = PyList::new(py, added.iter().chain(before.iter()))?;
        path.set_slice(0, path.len(), &reordered)?;
    }
    for (i, dir) in python_path.iter().enumerate() {
        path.insert(i, dir.as_os_str())?;
    }
    Ok(())
}

/// SIGUSR2 dumps the Python stack of every thread to stderr: the router sends it when a
/// request overruns its timeout. faulthandler's handler is C code that needs no GIL, so it also
/// shows a thread spinning with the GIL held. It owns SIGUSR2 only (installed `SA_RESTART`, so
/// blocked system calls resume) and leaves SIGTERM/SIGINT to the worker. Registered before the
/// app is imported, so a hanging import can be seen too.
fn register_stack_dumps(py: Python<'_>) -> PyResult<()> {
    let signal = py.import("signal")?.getattr("SIGUSR2")?;
    let kwargs = PyDict::new(py);
    kwargs.set_item("file", py.import("sys")?.getattr("stderr")?)?;
    kwargs.set_item("all_threads", true)?;
    kwargs.set_item("chain", false)?;
    py.import("faulthandler")?.call_method("register", (signal,), Some(&kwargs))?;
    Ok(())
}

/// Import the application callable.
pub fn load(py: Python<'_>, entry: &Entry) -> PyResult<Py<PyAny>> {
    let app = match entry {
        Entry::Module { module, attrs } => {
            let mut obj = py.import(module.as_str())?.into_any();
            for a in attrs {
                obj = obj.getattr(a.as_str())?;
            }
            obj
        }
        Entry::Script(path) => load_script(py, path)?.getattr("application")?,
    };
    if !app.is_callable() {
        return Err(PyTypeError::new_err(format!("WSGI application {app:?} is not callable")));
    }
    Ok(app.unbind())
}

/// Execute a script file as a fresh module (with importlib, so tracebacks show its lines).
fn load_script<'py>(py: Python<'py>, path: &Path) -> PyResult<Bound<'py, PyAny>> {
    let path = std::path::absolute(path).map_err(PyErr::from)?;
    if !path.is_file() {
        return Err(PyFileNotFoundError::new_err(format!("no WSGI script {}", path.display())));
    }
    let name = script_module_name(&path);
    let machinery = py.import("importlib.machinery")?;
    let util = py.import("importlib.util")?;
    // An explicit loader: `.wsgi` is not a suffix importlib would recognise on its own.
    let loader = machinery.getattr("SourceFileLoader")?.call1((&name, path.as_os_str()))?;
    let spec = util
        .getattr("spec_from_file_location")?
        .call((&name, path.as_os_str()), Some(&[("loader", &loader)].into_py_dict(py)?))?;
    if spec.is_none() {
        return Err(PyValueError::new_err(format!("cannot load {}", path.display())));
    }
    let module = util.getattr("module_from_spec")?.call1((&spec,))?;
    py.import("sys")?.getattr("modules")?.set_item(&name, &module)?;
    loader.call_method1("exec_module", (&module,))?;
    Ok(module)
}

/// Per-process environ values.
/// Collect, then move every object the process holds now into the collector's permanent
/// generation: later full collections (Trac runs one after every request) no longer walk the
/// modules, the app's caches and its templates. Objects still go when their count drops to
/// zero; only reference cycles among frozen objects would never be collected, so freezing
/// happens only when no request is half done.
pub fn gc_freeze(py: Python<'_>) {
    let frozen = py.import("gc").and_then(|gc| {
        gc.call_method0("collect")?;
        gc.call_method0("freeze")?;
        gc.call_method0("get_freeze_count")?.extract::<usize>()
    });
    match frozen {
        Ok(n) => tracing::debug!(objects = n, "gc.freeze()"),
        Err(e) => tracing::warn!("gc.freeze() failed: {e}"),
    }
}

pub fn statics(py: Python<'_>, threads: usize, processes: usize) -> PyResult<Statics> {
    Ok(Statics {
        version: PyTuple::new(py, [1, 0])?.unbind(),
        errors: py.import("sys")?.getattr("stderr")?.unbind(),
        file_wrapper: py.get_type::<FileWrapper>().into_any().unbind(),
        multithread: threads > 1,
        multiprocess: processes > 1,
    })
}

/// `wsgi.file_wrapper`: iterates a file-like object in blocks and closes it.
#[pyclass(frozen, module = "paddock")]
pub struct FileWrapper {
    filelike: Py<PyAny>,
    blksize: usize,
}

#[pymethods]
impl FileWrapper {
    #[new]
    #[pyo3(signature = (filelike, blksize=8192))]
    fn new(filelike: Py<PyAny>, blksize: usize) -> Self {
        Self { filelike, blksize: blksize.max(1) }
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let block = self.filelike.bind(py).call_method1("read", (self.blksize,))?;
        Ok((block.len()? > 0).then_some(block))
    }

    fn close(&self, py: Python<'_>) -> PyResult<()> {
        if let Some(close) = self.filelike.bind(py).getattr_opt("close")? {
            close.call0()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries() {
        let e = Entry::parse("trac.web.main:dispatch_request").expect("valid");
        let want = Entry::Module {
            module: "trac.web.main".into(),
            attrs: vec!["dispatch_request".into()],
        };
        assert_eq!(e, want);
        let e = Entry::parse("pkg.mod").expect("valid");
        assert!(matches!(e, Entry::Module { attrs, .. } if attrs == ["application"]));
        let e = Entry::parse("m:App.wsgi_app").expect("valid");
        assert!(matches!(e, Entry::Module { attrs, .. } if attrs == ["App", "wsgi_app"]));
        assert_eq!(Entry::parse("app.wsgi"), Ok(Entry::Script("app.wsgi".into())));
        assert_eq!(Entry::parse("apache/trac"), Ok(Entry::Script("apache/trac".into())));
        for bad in ["", ":x", "m:", "a..b:c", "m:a b"] {
            assert!(Entry::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn script_names_are_stable_and_distinct() {
        let a = script_module_name(Path::new("/srv/a/app.wsgi"));
        assert_eq!(a, script_module_name(Path::new("/srv/a/app.wsgi")));
        assert_ne!(a, script_module_name(Path::new("/srv/b/app.wsgi")));
        assert!(a.starts_with("_paddock_wsgi_") && a.len() == "_paddock_wsgi_".len() + 16);
    }
}
