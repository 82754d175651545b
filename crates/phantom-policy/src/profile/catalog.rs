//! Where profiles come from: the built-in ones (the YAML files of the repository's
//! `profiles/` directory, compiled into the binary) and the user's, `NAME.yaml` (or
//! `.yml`) files in the directories of `--profile-path` and `PHANTOM_PROFILE_PATH`
//! (colon-separated). A user profile with a built-in's name replaces it.

use std::path::{Path, PathBuf};

use super::{parse_profile, Profile, ProfileError};

/// The environment variable listing user profile directories, colon-separated.
pub const PROFILE_PATH_ENV: &str = "PHANTOM_PROFILE_PATH";

/// The built-in profiles: name and YAML.
pub const BUILTIN: &[(&str, &str)] = &[
    (
        "python-dev",
        include_str!("../../../../profiles/python-dev.yaml"),
    ),
    (
        "node-dev",
        include_str!("../../../../profiles/node-dev.yaml"),
    ),
    ("go-dev", include_str!("../../../../profiles/go-dev.yaml")),
    (
        "rust-dev",
        include_str!("../../../../profiles/rust-dev.yaml"),
    ),
    (
        "java-dev",
        include_str!("../../../../profiles/java-dev.yaml"),
    ),
    ("strict", include_str!("../../../../profiles/strict.yaml")),
    ("minimal", include_str!("../../../../profiles/minimal.yaml")),
];

/// Where a profile was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProfileSource {
    Builtin,
    File(PathBuf),
}

impl ProfileSource {
    /// How errors name it: the path, or `builtin:NAME`.
    pub fn display_name(&self, name: &str) -> String {
        match self {
            ProfileSource::Builtin => format!("builtin:{name}"),
            ProfileSource::File(p) => p.display().to_string(),
        }
    }
}

/// A profile of the catalog with its source text.
#[derive(Clone, Debug)]
pub struct CatalogEntry {
    pub profile: Profile,
    pub source: ProfileSource,
    pub text: String,
}

/// Every profile phantom can find, by name.
#[derive(Debug, Default)]
pub struct Catalog {
    entries: Vec<CatalogEntry>,
    dirs: Vec<PathBuf>,
    /// User files that did not parse; they are left out of the catalog.
    pub errors: Vec<ProfileError>,
}

impl Catalog {
    /// The built-in profiles only.
    pub fn builtin() -> Catalog {
        let mut c = Catalog::default();
        for (name, text) in BUILTIN {
            let profile = parse_profile(text, &format!("builtin:{name}"))
                .unwrap_or_else(|e| panic!("built-in profile {name} does not parse: {e}"));
            c.entries.push(CatalogEntry {
                profile,
                source: ProfileSource::Builtin,
                text: (*text).to_string(),
            });
        }
        c
    }

    /// The directories to search: `extra` (from `--profile-path`) first, then
    /// `PHANTOM_PROFILE_PATH`.
    pub fn search_dirs(extra: &[PathBuf]) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = extra.to_vec();
        if let Some(v) = std::env::var_os(PROFILE_PATH_ENV) {
            dirs.extend(std::env::split_paths(&v).filter(|p| !p.as_os_str().is_empty()));
        }
        dirs
    }

    /// Built-ins plus every profile in `dirs` (earlier directories win; a user profile
    /// replaces a built-in of the same name). A missing directory is ignored; a file
    /// that does not parse is recorded in `errors`.
    pub fn load(dirs: &[PathBuf]) -> Catalog {
        let mut c = Catalog::builtin();
        c.dirs = dirs.to_vec();
        let mut user: Vec<CatalogEntry> = Vec::new();
        for dir in dirs {
            let Ok(rd) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut files: Vec<PathBuf> = rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
                .collect();
            files.sort();
            for path in files {
                match load_file(&path) {
                    Ok(entry) => {
                        if user.iter().any(|e| e.profile.name == entry.profile.name) {
                            continue; // an earlier directory has it
                        }
                        user.push(entry);
                    }
                    Err(e) => c.errors.push(e),
                }
            }
        }
        for entry in user {
            match c
                .entries
                .iter_mut()
                .find(|e| e.profile.name == entry.profile.name)
            {
                Some(slot) => *slot = entry,
                None => c.entries.push(entry),
            }
        }
        c
    }

    pub fn entries(&self) -> &[CatalogEntry] {
        &self.entries
    }

    pub fn get(&self, name: &str) -> Result<&CatalogEntry, ProfileError> {
        self.entries
            .iter()
            .find(|e| e.profile.name == name)
            .ok_or_else(|| ProfileError::NotFound {
                name: name.to_string(),
                builtin: BUILTIN.iter().map(|(n, _)| *n).collect(),
                searched: self.dirs.clone(),
            })
    }
}

/// Reads and parses one profile file. Its name in the catalog is its `profile:` key,
/// whatever the file is called.
pub fn load_file(path: &Path) -> Result<CatalogEntry, ProfileError> {
    let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let profile = parse_profile(&text, &path.display().to_string())?;
    Ok(CatalogEntry {
        profile,
        source: ProfileSource::File(path.to_path_buf()),
        text,
    })
}
