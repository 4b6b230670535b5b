//! Finding a native library that a Python wheel ships, at run time.
//!
//! ONNX Runtime and LightGBM are loaded dynamically (nothing is compiled or linked at build
//! time): the library comes from the pinned wheel that `scripts/setup.sh` installs into the
//! project's `.venv`. The lookup order, the same for every [`WheelLib`]:
//!
//! 1. the library's environment variable (a file path), else
//! 2. the wheel in a `.venv` of the current directory or one of its parents, or beside the
//!    executable, else
//! 3. the wheel of the `python3` on `PATH` (found without importing the package, so a wheel
//!    installed without its Python dependencies still counts).

use std::path::{Path, PathBuf};

/// Where one wheel keeps its library.
#[derive(Debug, Clone, Copy)]
pub struct WheelLib {
    /// Environment variable naming the library file directly.
    pub env_var: &'static str,
    /// The Python package (the folder under `site-packages`).
    pub package: &'static str,
    /// The library's folder inside the package.
    pub subdir: &'static str,
    /// File name prefix (`libonnxruntime.so` matches `libonnxruntime.so.1.31.1`).
    pub file_prefix: &'static str,
}

impl WheelLib {
    /// The library inside a package folder (the longest matching name: the fully versioned one).
    fn in_package(&self, package_dir: &Path) -> Option<PathBuf> {
        let dir = package_dir.join(self.subdir);
        let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(self.file_prefix))
            })
            .collect();
        found.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
        found.into_iter().next()
    }

    /// The library inside a virtualenv folder.
    fn in_venv(&self, venv: &Path) -> Option<PathBuf> {
        for entry in std::fs::read_dir(venv.join("lib")).ok()?.flatten() {
            let package = entry.path().join("site-packages").join(self.package);
            if let Some(p) = self.in_package(&package) {
                return Some(p);
            }
        }
        None
    }

    /// Resolves the library path (see the module docs for the order). The error says what
    /// was tried, for the caller's "not found" message.
    pub fn find(&self) -> Result<PathBuf, String> {
        if let Some(p) = std::env::var_os(self.env_var) {
            let p = PathBuf::from(p);
            return if p.is_file() {
                Ok(p)
            } else {
                Err(format!("{}={} is not a file", self.env_var, p.display()))
            };
        }
        let mut roots: Vec<PathBuf> = Vec::new();
        if let Ok(cwd) = std::env::current_dir() {
            roots.extend(cwd.ancestors().map(Path::to_path_buf));
        }
        if let Ok(exe) = std::env::current_exe() {
            roots.extend(exe.ancestors().skip(1).map(Path::to_path_buf));
        }
        for root in &roots {
            if let Some(p) = self.in_venv(&root.join(".venv")) {
                return Ok(p);
            }
        }
        let script = format!(
            "import importlib.util as u; s = u.find_spec('{}'); print(s.submodule_search_locations[0])",
            self.package
        );
        let probe = std::process::Command::new("python3")
            .args(["-c", &script])
            .stderr(std::process::Stdio::null())
            .output();
        if let Ok(out) = probe
            && out.status.success()
        {
            let package = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if let Some(p) = self.in_package(&package) {
                return Ok(p);
            }
        }
        Err(format!(
            "{} is unset, no .venv with the {} wheel was found above the current directory or \
             the executable, and the python3 on PATH has no {} package",
            self.env_var, self.package, self.package
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAKE: WheelLib = WheelLib {
        env_var: "KRXFLOW_TEST_NO_SUCH_VAR",
        package: "krxflow_fake_pkg",
        subdir: "lib",
        file_prefix: "libfake.so",
    };

    #[test]
    fn a_venv_wheel_is_found_and_the_versioned_name_wins() {
        let dir = tempfile::tempdir().expect("tmp");
        let lib = dir
            .path()
            .join(".venv/lib/python3.11/site-packages/krxflow_fake_pkg/lib");
        std::fs::create_dir_all(&lib).expect("mkdir");
        std::fs::write(lib.join("libfake.so"), b"").expect("write");
        std::fs::write(lib.join("libfake.so.1.2.3"), b"").expect("write");
        std::fs::write(lib.join("other.so"), b"").expect("write");
        let found = FAKE.in_venv(&dir.path().join(".venv")).expect("found");
        assert!(found.ends_with("libfake.so.1.2.3"), "{}", found.display());
        assert!(FAKE.in_venv(&dir.path().join("nothing")).is_none());
    }

    #[test]
    fn a_missing_library_names_what_was_tried() {
        let err = FAKE.find().expect_err("nothing installed");
        assert!(err.contains("KRXFLOW_TEST_NO_SUCH_VAR is unset"), "{err}");
        assert!(err.contains("krxflow_fake_pkg"), "{err}");
    }
}
