//! Where Debian's archive lives: the host's apt sources, or `VESSEL_DEBIAN_MIRROR`.
//!
//! apt keeps its sources in two formats: deb822 stanzas in
//! `/etc/apt/sources.list.d/*.sources` and one-line entries in
//! `/etc/apt/sources.list` and `/etc/apt/sources.list.d/*.list`. We read both
//! and take the first `deb` source with component `main` whose URI is a Debian
//! archive base (its path ends in `/debian`). Security and other vendors'
//! archives do not end in `/debian` and are skipped. No mirror host name is
//! ever written in vessel: the host says where its mirror is.

use std::path::{Path, PathBuf};

use thiserror::Error;

/// Environment variable that overrides the mirror found in apt's sources.
pub const MIRROR_ENV: &str = "VESSEL_DEBIAN_MIRROR";

/// Errors finding the Debian archive.
#[derive(Debug, Error)]
pub enum SourcesError {
    #[error(
        "no Debian archive found in the host's apt sources ({searched}); set {MIRROR_ENV} to \
         a Debian archive base URL, e.g. {MIRROR_ENV}=http://<your-mirror>/debian"
    )]
    NotFound { searched: String },
    #[error("reading apt source file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing apt source file {path}: {message}; fix the file or set {MIRROR_ENV}")]
    Parse { path: PathBuf, message: String },
    #[error("{MIRROR_ENV}={value} is not an http:// or https:// URL")]
    BadEnv { value: String },
}

/// One apt source: a URI with its suites and components.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AptSource {
    pub types: Vec<String>,
    pub uri: String,
    pub suites: Vec<String>,
    pub components: Vec<String>,
}

fn words(value: Option<&str>) -> Vec<String> {
    value
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// Parse a deb822 `.sources` file. Stanzas with `Enabled: no` are dropped;
/// a stanza with several URIs gives one source per URI.
pub fn parse_deb822(text: &str, path: &Path) -> Result<Vec<AptSource>, SourcesError> {
    // deb822-fast keeps comment lines that sit inside a stanza; apt ignores them.
    let cleaned: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    let doc: deb822_fast::Deb822 = cleaned.parse().map_err(|e| SourcesError::Parse {
        path: path.to_owned(),
        message: format!("{e}"),
    })?;
    let mut out = Vec::new();
    for para in doc.iter() {
        if para
            .get("Enabled")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("no"))
        {
            continue;
        }
        let types = words(para.get("Types"));
        let suites = words(para.get("Suites"));
        let components = words(para.get("Components"));
        for uri in words(para.get("URIs")) {
            out.push(AptSource {
                types: types.clone(),
                uri,
                suites: suites.clone(),
                components: components.clone(),
            });
        }
    }
    Ok(out)
}

/// Parse one-line `sources.list` entries: `deb [options] URI SUITE [COMPONENT...]`.
/// Malformed lines are skipped, as apt would complain about them itself.
pub fn parse_one_line(text: &str) -> Vec<AptSource> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some((kind, rest)) = line.split_once(char::is_whitespace) else {
            continue;
        };
        if kind != "deb" && kind != "deb-src" {
            continue;
        }
        let mut rest = rest.trim_start();
        if rest.starts_with('[') {
            match rest.find(']') {
                Some(end) => rest = rest[end + 1..].trim_start(),
                None => continue,
            }
        }
        let mut fields = rest.split_whitespace();
        let (Some(uri), Some(suite)) = (fields.next(), fields.next()) else {
            continue;
        };
        out.push(AptSource {
            types: vec![kind.to_owned()],
            uri: uri.to_owned(),
            suites: vec![suite.to_owned()],
            components: fields.map(str::to_owned).collect(),
        });
    }
    out
}

/// Read every apt source under `root` (normally `/`): `etc/apt/sources.list`,
/// then `etc/apt/sources.list.d/*.list` and `*.sources` in name order.
pub fn read_host_sources(root: &Path) -> Result<Vec<AptSource>, SourcesError> {
    let mut out = Vec::new();
    let list = root.join("etc/apt/sources.list");
    if list.is_file() {
        let text = std::fs::read_to_string(&list).map_err(|source| SourcesError::Read {
            path: list.clone(),
            source,
        })?;
        out.extend(parse_one_line(&text));
    }
    let dir = root.join("etc/apt/sources.list.d");
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    for path in files {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if ext != "list" && ext != "sources" {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(|source| SourcesError::Read {
            path: path.clone(),
            source,
        })?;
        if ext == "list" {
            out.extend(parse_one_line(&text));
        } else {
            out.extend(parse_deb822(&text, &path)?);
        }
    }
    Ok(out)
}

/// The first source that is a Debian archive base with component `main`.
pub fn pick_debian_archive(sources: &[AptSource]) -> Option<String> {
    sources
        .iter()
        .find(|s| {
            s.types.iter().any(|t| t == "deb")
                && s.components.iter().any(|c| c == "main")
                && (s.uri.starts_with("http://") || s.uri.starts_with("https://"))
                && s.uri.trim_end_matches('/').ends_with("/debian")
                && !s.suites.iter().any(|suite| suite.ends_with("-security"))
        })
        .map(|s| s.uri.trim_end_matches('/').to_owned())
}

/// The Debian archive base URL: `VESSEL_DEBIAN_MIRROR` if set, else the host's apt sources.
pub fn debian_mirror() -> Result<String, SourcesError> {
    mirror_from(std::env::var(MIRROR_ENV).ok(), Path::new("/"))
}

/// [`debian_mirror`] with its inputs given: the environment value and the root to read apt from.
pub fn mirror_from(env: Option<String>, root: &Path) -> Result<String, SourcesError> {
    if let Some(value) = env.filter(|v| !v.trim().is_empty()) {
        let value = value.trim().trim_end_matches('/').to_owned();
        if !(value.starts_with("http://") || value.starts_with("https://")) {
            return Err(SourcesError::BadEnv { value });
        }
        return Ok(value);
    }
    let sources = read_host_sources(root)?;
    pick_debian_archive(&sources).ok_or_else(|| SourcesError::NotFound {
        searched: format!(
            "{} and {}",
            root.join("etc/apt/sources.list").display(),
            root.join("etc/apt/sources.list.d/").display()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEB822: &str = "\
Types: deb
# http://snapshot.invalid/archive/debian/20250520T000000Z
URIs: http://archive.invalid/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://archive.invalid/debian-security
Suites: bookworm-security
Components: main
";

    #[test]
    fn deb822_sample_gives_two_sources_and_picks_the_archive() {
        let s = parse_deb822(DEB822, Path::new("debian.sources")).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].uri, "http://archive.invalid/debian");
        assert_eq!(s[0].suites, vec!["bookworm", "bookworm-updates"]);
        assert_eq!(s[1].components, vec!["main"]);
        assert_eq!(
            pick_debian_archive(&s).as_deref(),
            Some("http://archive.invalid/debian")
        );
    }

    #[test]
    fn security_only_and_disabled_sources_are_not_picked() {
        let text = "Types: deb\nURIs: http://archive.invalid/debian\nSuites: trixie\n\
                    Components: main\nEnabled: no\n\n\
                    Types: deb\nURIs: http://archive.invalid/debian-security\n\
                    Suites: trixie-security\nComponents: main\n";
        let s = parse_deb822(text, Path::new("x.sources")).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(pick_debian_archive(&s), None);
    }

    #[test]
    fn one_line_entries_with_options_and_comments() {
        let text = "# comment\n\
            deb [arch=amd64 signed-by=/k.gpg] https://vendor.invalid/apt stable main\n\
            deb-src http://archive.invalid/debian bookworm main\n\
            deb http://archive.invalid/debian/ bookworm main contrib # trailing\n\
            deb http://archive.invalid/debian-security bookworm-security main\n\
            garbage line\n";
        let s = parse_one_line(text);
        assert_eq!(s.len(), 4);
        assert_eq!(s[0].uri, "https://vendor.invalid/apt");
        assert_eq!(s[2].components, vec!["main", "contrib"]);
        assert_eq!(
            pick_debian_archive(&s).as_deref(),
            Some("http://archive.invalid/debian")
        );
    }

    #[test]
    fn env_overrides_and_missing_sources_say_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let got = mirror_from(Some("http://m.invalid/debian/".into()), dir.path()).unwrap();
        assert_eq!(got, "http://m.invalid/debian");
        assert!(matches!(
            mirror_from(Some("ftp://m.invalid".into()), dir.path()),
            Err(SourcesError::BadEnv { .. })
        ));
        let err = mirror_from(None, dir.path()).unwrap_err();
        assert!(err.to_string().contains(MIRROR_ENV), "{err}");
        std::fs::create_dir_all(dir.path().join("etc/apt/sources.list.d")).unwrap();
        std::fs::write(
            dir.path().join("etc/apt/sources.list.d/debian.sources"),
            DEB822,
        )
        .unwrap();
        assert_eq!(
            mirror_from(None, dir.path()).unwrap(),
            "http://archive.invalid/debian"
        );
    }
}
