//! Where pedvision finds what it ships (the model manifests, the demo clip, the
//! example pipeline files and the ONNX Runtime libraries) at run time, so that one
//! binary runs from its checkout, from `make install`'s tree under any prefix, a
//! copy of that tree moved elsewhere, or the Debian package.
//!
//! The order, first match wins:
//! 1. the flag (`--model`, `--ort-lib`): used as given, never searched;
//! 2. the environment: `PEDVISION_MODEL` (a manifest), `PEDVISION_DATA_DIR` (a folder
//!    laid out like `share/pedvision`), `ORT_DYLIB_PATH` (one library file);
//! 3. beside the executable: `<bin>/../share/pedvision/` and `<bin>/../lib/pedvision/`;
//! 4. the XDG data directory: `$XDG_DATA_HOME/pedvision/`, else
//!    `$HOME/.local/share/pedvision/` (skipped when neither is set);
//! 5. the system: `/usr/share/pedvision/` and `/usr/lib/pedvision/`;
//! 6. the build checkout, last, for `cargo run` (its `models/`, `media/`,
//!    `pipelines/`, and `.ort/`).
//!
//! A data folder holds `models/`, `media/` and `pipelines/`; a library folder holds
//! the CPU build directly (or in `lib/`, as the checkout's `.ort/` does) and the
//! others in `openvino/` and `gpu/`. A resource that is nowhere is a [`NotFound`]
//! naming every place searched. This module only looks; it depends on nothing else
//! in the crate.

use std::path::{Path, PathBuf};

/// The manifest of the default model, relative to a data folder.
pub const DEFAULT_MODEL: &str = "models/nanodet-g.toml";
/// The demo clip (200 frames of OpenCV's vtest.avi), relative to a data folder.
pub const DEMO_CLIP: &str = "media/vtest-200.avi";
/// The example pipeline files, relative to a data folder.
pub const PIPELINES: &str = "pipelines";

/// The environment variable naming the model manifest.
pub const MODEL_ENV: &str = "PEDVISION_MODEL";
/// The environment variable naming a data folder.
pub const DATA_DIR_ENV: &str = "PEDVISION_DATA_DIR";
/// The environment variable naming the ONNX Runtime library (the `ort` crate's own).
pub const ORT_ENV: &str = "ORT_DYLIB_PATH";

/// The build checkout, known at build time; searched last.
const CHECKOUT: &str = env!("CARGO_MANIFEST_DIR");
/// The system-wide data and library folders the Debian package fills.
const SYSTEM_DATA: &str = "/usr/share/pedvision";
const SYSTEM_LIB: &str = "/usr/lib/pedvision";

/// How a resource was found: the step of the search order it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A command-line flag or a pipeline file named it.
    Given,
    /// An environment variable named it or its folder.
    Environment(&'static str),
    /// Beside the executable (`../share/pedvision`, `../lib/pedvision`).
    BesideExecutable,
    /// The user's XDG data directory.
    UserData,
    /// `/usr/share/pedvision` or `/usr/lib/pedvision`.
    System,
    /// The source checkout the binary was built in.
    Checkout,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Given => f.write_str("given"),
            Self::Environment(name) => write!(f, "from {name}"),
            Self::BesideExecutable => f.write_str("beside the executable"),
            Self::UserData => f.write_str("XDG data directory"),
            Self::System => f.write_str("system"),
            Self::Checkout => f.write_str("build checkout"),
        }
    }
}

/// A folder searched, and which step of the order it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub dir: PathBuf,
    pub origin: Origin,
}

/// A resource found, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub path: PathBuf,
    pub origin: Origin,
}

impl std::fmt::Display for Found {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.path.display(), self.origin)
    }
}

/// A resource that is in none of the places searched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} not found; searched: {}", .searched.join(", "))]
pub struct NotFound {
    pub what: String,
    pub searched: Vec<String>,
}

/// The environment the search reads, taken once so that tests can give their own.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    pub model: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub xdg_data_home: Option<PathBuf>,
    pub home: Option<PathBuf>,
    pub executable: Option<PathBuf>,
}

impl Environment {
    /// This process's environment and executable.
    pub fn current() -> Self {
        let var = |name: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        Self {
            model: var(MODEL_ENV),
            data_dir: var(DATA_DIR_ENV),
            xdg_data_home: var("XDG_DATA_HOME"),
            home: var("HOME"),
            executable: std::env::current_exe().ok(),
        }
    }

    /// The folder holding the executable's folder (`/usr` for `/usr/bin/pedvision`).
    fn prefix(&self) -> Option<&Path> {
        self.executable.as_deref()?.parent()?.parent()
    }

    /// The data folders, in search order.
    pub fn data_dirs(&self) -> Vec<Place> {
        let mut places = Vec::new();
        if let Some(dir) = &self.data_dir {
            places.push(place(dir.clone(), Origin::Environment(DATA_DIR_ENV)));
        }
        if let Some(prefix) = self.prefix() {
            places.push(place(
                prefix.join("share/pedvision"),
                Origin::BesideExecutable,
            ));
        }
        let user = match (&self.xdg_data_home, &self.home) {
            (Some(xdg), _) if xdg.is_absolute() => Some(xdg.join("pedvision")),
            (_, Some(home)) => Some(home.join(".local/share/pedvision")),
            _ => None,
        };
        if let Some(dir) = user {
            places.push(place(dir, Origin::UserData));
        }
        places.push(place(SYSTEM_DATA.into(), Origin::System));
        places.push(place(CHECKOUT.into(), Origin::Checkout));
        dedup(places)
    }

    /// The folders holding ONNX Runtime builds, in search order (after `--ort-lib`
    /// and `ORT_DYLIB_PATH`, which name a file and are the caller's to check).
    pub fn library_dirs(&self) -> Vec<Place> {
        let mut places = Vec::new();
        if let Some(prefix) = self.prefix() {
            places.push(place(
                prefix.join("lib/pedvision"),
                Origin::BesideExecutable,
            ));
        }
        // A binary copied next to the libraries, as a plain folder.
        if let Some(dir) = self.executable.as_deref().and_then(Path::parent) {
            places.push(place(dir.to_path_buf(), Origin::BesideExecutable));
        }
        places.push(place(SYSTEM_LIB.into(), Origin::System));
        places.push(place(Path::new(CHECKOUT).join(".ort"), Origin::Checkout));
        dedup(places)
    }

    /// A file at `relative` in the first data folder that has it. A
    /// `PEDVISION_DATA_DIR` that is not a folder is an error, not a step skipped.
    pub fn find_data(&self, relative: &str, what: &str) -> Result<Found, NotFound> {
        if let Some(dir) = self.data_dir.as_deref().filter(|d| !d.is_dir()) {
            return Err(NotFound {
                what: format!("{what} ({DATA_DIR_ENV} {} is not a folder)", dir.display()),
                searched: vec![format!("{} (from {DATA_DIR_ENV})", dir.display())],
            });
        }
        find_in(&self.data_dirs(), what, |dir| {
            let path = dir.join(relative);
            path.exists().then_some(path)
        })
    }

    /// The default model's manifest: `PEDVISION_MODEL`, else the bundled one.
    pub fn default_model(&self) -> Result<Found, NotFound> {
        if let Some(path) = &self.model {
            return given(path, Origin::Environment(MODEL_ENV), "model manifest");
        }
        self.find_data(DEFAULT_MODEL, "the default model (nanodet-g.toml)")
    }
}

fn place(dir: PathBuf, origin: Origin) -> Place {
    Place { dir, origin }
}

/// Drops later repeats of a folder (a binary in the checkout's own tree, say).
fn dedup(places: Vec<Place>) -> Vec<Place> {
    let mut out: Vec<Place> = Vec::with_capacity(places.len());
    for p in places {
        if !out.iter().any(|q| q.dir == p.dir) {
            out.push(p);
        }
    }
    out
}

/// The first place where `probe` finds the resource, or every place searched.
pub fn find_in(
    places: &[Place],
    what: &str,
    probe: impl Fn(&Path) -> Option<PathBuf>,
) -> Result<Found, NotFound> {
    places
        .iter()
        .find_map(|p| {
            probe(&p.dir).map(|path| Found {
                path,
                origin: p.origin,
            })
        })
        .ok_or_else(|| NotFound {
            what: what.to_string(),
            searched: places
                .iter()
                .map(|p| format!("{} ({})", p.dir.display(), p.origin))
                .collect(),
        })
}

/// A file named by a flag or a variable: it must be there; it is never searched for.
pub fn given(path: &Path, origin: Origin, what: &str) -> Result<Found, NotFound> {
    if path.is_file() {
        Ok(Found {
            path: path.to_path_buf(),
            origin,
        })
    } else {
        Err(NotFound {
            what: format!("{what} {}", path.display()),
            searched: vec![format!("{} ({origin})", path.display())],
        })
    }
}

/// The model manifest a run uses: the one given, else the default.
pub fn model(given_path: Option<&Path>) -> Result<Found, NotFound> {
    match given_path {
        Some(path) => given(path, Origin::Given, "model manifest"),
        None => Environment::current().default_model(),
    }
}

/// The demo clip, for a run given no input.
pub fn demo_clip() -> Result<Found, NotFound> {
    Environment::current().find_data(DEMO_CLIP, "the demo clip (vtest-200.avi)")
}

/// The example pipeline files' folder.
pub fn pipelines() -> Result<Found, NotFound> {
    Environment::current().find_data(PIPELINES, "the example pipeline files")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_in(root: &Path) -> Environment {
        Environment {
            executable: Some(root.join("prefix/bin/pedvision")),
            ..Default::default()
        }
    }

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"x").unwrap();
    }

    #[test]
    fn the_order_is_environment_executable_user_system_checkout() {
        let env = Environment {
            data_dir: Some("/data".into()),
            home: Some("/home/u".into()),
            executable: Some("/opt/pv/bin/pedvision".into()),
            ..Default::default()
        };
        let dirs: Vec<_> = env.data_dirs().into_iter().map(|p| p.origin).collect();
        assert_eq!(
            dirs,
            [
                Origin::Environment(DATA_DIR_ENV),
                Origin::BesideExecutable,
                Origin::UserData,
                Origin::System,
                Origin::Checkout
            ]
        );
        assert_eq!(env.data_dirs()[1].dir, Path::new("/opt/pv/share/pedvision"));
        assert_eq!(
            env.data_dirs()[2].dir,
            Path::new("/home/u/.local/share/pedvision")
        );
    }

    #[test]
    fn xdg_data_home_wins_over_home_and_no_home_skips_the_user_step() {
        let env = Environment {
            xdg_data_home: Some("/x".into()),
            home: Some("/home/u".into()),
            ..Default::default()
        };
        assert!(
            env.data_dirs()
                .iter()
                .any(|p| p.dir == Path::new("/x/pedvision"))
        );
        let bare = Environment::default();
        assert!(
            bare.data_dirs()
                .iter()
                .all(|p| p.origin != Origin::UserData)
        );
        // A relative XDG_DATA_HOME is invalid by the spec: HOME's default is used.
        let relative = Environment {
            xdg_data_home: Some("x".into()),
            home: Some("/h".into()),
            ..Default::default()
        };
        assert!(
            relative
                .data_dirs()
                .iter()
                .any(|p| p.dir == Path::new("/h/.local/share/pedvision"))
        );
    }

    #[test]
    fn beside_the_executable_wins_over_the_checkout() {
        let root = tempfile::tempdir().unwrap();
        touch(
            &root
                .path()
                .join("prefix/share/pedvision")
                .join(DEFAULT_MODEL),
        );
        let found = env_in(root.path()).default_model().unwrap();
        assert_eq!(found.origin, Origin::BesideExecutable);
        assert!(found.path.starts_with(root.path()));
    }

    #[test]
    fn the_checkout_is_the_last_resort() {
        let root = tempfile::tempdir().unwrap();
        let found = env_in(root.path()).find_data(DEMO_CLIP, "demo").unwrap();
        // Unless the package is installed on this machine, the checkout has it.
        assert!(matches!(found.origin, Origin::Checkout | Origin::System));
    }

    #[test]
    fn the_model_variable_is_used_as_given_and_never_searched() {
        let env = Environment {
            model: Some("/nowhere/m.toml".into()),
            ..Default::default()
        };
        let err = env.default_model().unwrap_err();
        assert_eq!(err.searched, ["/nowhere/m.toml (from PEDVISION_MODEL)"]);
    }

    #[test]
    fn not_found_names_every_place_searched() {
        let root = tempfile::tempdir().unwrap();
        let env = env_in(root.path());
        let err = env.find_data("models/absent.toml", "absent").unwrap_err();
        let text = err.to_string();
        assert_eq!(err.searched.len(), env.data_dirs().len());
        for p in env.data_dirs() {
            assert!(text.contains(&p.dir.display().to_string()), "{text}");
        }
        assert!(text.starts_with("absent not found; searched: "), "{text}");
    }

    #[test]
    fn a_data_folder_variable_that_is_not_a_folder_is_an_error() {
        let env = Environment {
            data_dir: Some("/nonexistent/pedvision-data".into()),
            ..Default::default()
        };
        let err = env.find_data(DEMO_CLIP, "the demo clip").unwrap_err();
        assert_eq!(
            err.to_string(),
            "the demo clip (PEDVISION_DATA_DIR /nonexistent/pedvision-data is not a folder) not found; \
             searched: /nonexistent/pedvision-data (from PEDVISION_DATA_DIR)"
        );
    }

    #[test]
    fn library_folders_follow_the_same_order() {
        let env = Environment {
            executable: Some("/opt/pv/bin/pedvision".into()),
            ..Default::default()
        };
        let dirs: Vec<_> = env.library_dirs().into_iter().map(|p| p.dir).collect();
        assert_eq!(dirs[0], Path::new("/opt/pv/lib/pedvision"));
        assert_eq!(dirs[1], Path::new("/opt/pv/bin"));
        assert_eq!(dirs[2], Path::new(SYSTEM_LIB));
        assert_eq!(dirs[3], Path::new(CHECKOUT).join(".ort"));
    }
}
