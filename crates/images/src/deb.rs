//! Reading `.deb` packages: an `ar` archive holding `data.tar.{xz,zst,gz}`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use thiserror::Error;

/// Errors unpacking a `.deb`.
#[derive(Debug, Error)]
pub enum DebError {
    #[error("opening {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid .deb ({message}); delete it and fetch again")]
    Corrupt { path: PathBuf, message: String },
    #[error("{path} has no data.tar member")]
    NoData { path: PathBuf },
    #[error("{path} uses unsupported compression {member}")]
    Compression { path: PathBuf, member: String },
}

/// A file taken out of a package's data archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DebFile {
    Regular { data: Vec<u8>, mode: u32 },
    Symlink { target: String },
}

/// Normalise a tar path (`./usr/bin/x`) to an absolute guest path (`/usr/bin/x`).
fn normalise(path: &Path) -> String {
    let s = path.to_string_lossy();
    let s = s.trim_start_matches("./").trim_start_matches('/');
    format!("/{}", s.trim_end_matches('/'))
}

/// Walk `deb`'s data archive and return the regular files and symlinks whose
/// absolute path `want` accepts.
pub fn extract(
    deb: &Path,
    want: impl Fn(&str) -> bool,
) -> Result<BTreeMap<String, DebFile>, DebError> {
    let corrupt = |message: String| DebError::Corrupt {
        path: deb.to_owned(),
        message,
    };
    let file = File::open(deb).map_err(|source| DebError::Open {
        path: deb.to_owned(),
        source,
    })?;
    let mut archive = ar::Archive::new(BufReader::new(file));
    while let Some(member) = archive.next_entry() {
        let member = member.map_err(|e| corrupt(format!("ar: {e}")))?;
        let name = String::from_utf8_lossy(member.header().identifier()).into_owned();
        let name = name.trim_end_matches('/').to_owned();
        if !name.starts_with("data.tar") {
            continue;
        }
        let decoder: Box<dyn Read + '_> = match name.as_str() {
            "data.tar" => Box::new(member),
            "data.tar.xz" => Box::new(liblzma::read::XzDecoder::new(member)),
            "data.tar.gz" => Box::new(flate2::read::GzDecoder::new(member)),
            "data.tar.zst" => Box::new(
                ruzstd::decoding::StreamingDecoder::new(member)
                    .map_err(|e| corrupt(format!("zstd: {e}")))?,
            ),
            _ => {
                return Err(DebError::Compression {
                    path: deb.to_owned(),
                    member: name,
                });
            }
        };
        let mut tar = tar::Archive::new(decoder);
        let mut out = BTreeMap::new();
        for entry in tar.entries().map_err(|e| corrupt(format!("{name}: {e}")))? {
            let mut entry = entry.map_err(|e| corrupt(format!("{name}: {e}")))?;
            let path = normalise(&entry.path().map_err(|e| corrupt(format!("{name}: {e}")))?);
            if !want(&path) {
                continue;
            }
            let kind = entry.header().entry_type();
            if kind.is_file() {
                let mode = entry.header().mode().unwrap_or(0o644);
                let mut data = Vec::with_capacity(entry.size() as usize);
                entry
                    .read_to_end(&mut data)
                    .map_err(|e| corrupt(format!("{name}: {path}: {e}")))?;
                out.insert(path, DebFile::Regular { data, mode });
            } else if kind.is_symlink() {
                let target = entry
                    .link_name()
                    .ok()
                    .flatten()
                    .map(|t| t.to_string_lossy().into_owned())
                    .unwrap_or_default();
                out.insert(path, DebFile::Symlink { target });
            }
        }
        return Ok(out);
    }
    Err(DebError::NoData {
        path: deb.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn build_deb(dir: &Path, compress: &str) -> Option<PathBuf> {
        let root = dir.join("pkg");
        std::fs::create_dir_all(root.join("DEBIAN")).unwrap();
        std::fs::create_dir_all(root.join("usr/bin")).unwrap();
        std::fs::create_dir_all(root.join("usr/share/doc/t")).unwrap();
        std::fs::write(
            root.join("DEBIAN/control"),
            "Package: t\nVersion: 1\nArchitecture: all\nMaintainer: t <t@t.invalid>\nDescription: t\n",
        )
        .unwrap();
        std::fs::write(root.join("usr/bin/tool"), b"#!/bin/sh\necho tool\n").unwrap();
        std::fs::write(root.join("usr/share/doc/t/README"), b"readme").unwrap();
        std::os::unix::fs::symlink("tool", root.join("usr/bin/alias")).unwrap();
        Command::new("chmod")
            .arg("755")
            .arg(root.join("usr/bin/tool"))
            .status()
            .unwrap();
        let deb = dir.join(format!("t-{compress}.deb"));
        let status = Command::new("dpkg-deb")
            .arg(format!("-Z{compress}"))
            .arg("--root-owner-group")
            .arg("--build")
            .arg(&root)
            .arg(&deb)
            .output();
        match status {
            Ok(o) if o.status.success() => Some(deb),
            Ok(o) => panic!("dpkg-deb failed: {}", String::from_utf8_lossy(&o.stderr)),
            Err(e) => {
                eprintln!("SKIP: dpkg-deb not available ({e}); install Debian's dpkg");
                None
            }
        }
    }

    #[test]
    fn extracts_files_and_symlinks_from_a_built_deb() {
        for compress in ["xz", "gzip", "zstd", "none"] {
            let dir = tempfile::tempdir().unwrap();
            let Some(deb) = build_deb(dir.path(), compress) else {
                return;
            };
            let files = extract(&deb, |p| p.starts_with("/usr/bin/")).unwrap();
            assert_eq!(files.len(), 2, "{compress}: {:?}", files.keys());
            match &files["/usr/bin/tool"] {
                DebFile::Regular { data, mode } => {
                    assert_eq!(data, b"#!/bin/sh\necho tool\n");
                    assert_eq!(mode & 0o777, 0o755);
                }
                other => panic!("{other:?}"),
            }
            assert_eq!(
                files["/usr/bin/alias"],
                DebFile::Symlink {
                    target: "tool".into()
                }
            );
        }
    }

    #[test]
    fn a_truncated_deb_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let Some(deb) = build_deb(dir.path(), "xz") else {
            return;
        };
        let bytes = std::fs::read(&deb).unwrap();
        let cut = dir.path().join("cut.deb");
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        assert!(extract(&cut, |_| true).is_err());
        std::fs::write(&cut, b"not an ar archive at all").unwrap();
        assert!(extract(&cut, |_| true).is_err());
    }
}
