//! The signed archive index: `dists/<suite>/InRelease`.
//!
//! The signature is checked the way apt checks it, with `gpgv` against
//! Debian's archive keyrings; only the text gpgv vouches for is parsed. The
//! parsed `SHA256:` section gives the size and hash of every index file
//! (`main/binary-riscv64/Packages.xz`), which in turn hold the hashes of the
//! `.deb`s: one signature covers everything we download.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use thiserror::Error;

/// Errors verifying or reading a Release file.
#[derive(Debug, Error)]
pub enum ReleaseError {
    #[error("cannot run gpgv to check {file}'s signature: {source}; install Debian's gpgv package")]
    GpgvMissing {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "bad or untrusted signature on {file} (checked with gpgv against {keyrings}): {detail}"
    )]
    BadSignature {
        file: PathBuf,
        keyrings: String,
        detail: String,
    },
    #[error(
        "no Debian archive keyring found (looked for {looked}); install Debian's \
         debian-archive-keyring package"
    )]
    NoKeyring { looked: String },
    #[error("{file}: {message}")]
    Parse { file: String, message: String },
    #[error("{index} is not listed in the SHA256 section of {file}")]
    NotListed { file: String, index: String },
}

/// Debian's archive keyrings on this host: the combined keyring plus the
/// per-release ones that some hosts carry (bookworm's combined keyring may
/// predate a newer release's key).
pub fn default_keyrings() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let main = PathBuf::from("/usr/share/keyrings/debian-archive-keyring.gpg");
    if main.is_file() {
        out.push(main);
    }
    for dir in ["/usr/share/keyrings", "/etc/apt/trusted.gpg.d"] {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut more: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                name.starts_with("debian-archive-")
                    && !name.contains("removed")
                    && (name.ends_with(".gpg") || name.ends_with(".asc"))
                    && name != "debian-archive-keyring.gpg"
            })
            .collect();
        more.sort();
        out.extend(more);
    }
    out
}

/// Check `inrelease`'s clearsigned signature with gpgv and return the signed
/// text only. At least one good signature from the keyrings is required and
/// no bad one is tolerated (apt's rule).
pub fn verify_inrelease(inrelease: &Path, keyrings: &[PathBuf]) -> Result<String, ReleaseError> {
    if keyrings.is_empty() {
        return Err(ReleaseError::NoKeyring {
            looked: "/usr/share/keyrings/debian-archive-*.gpg, /etc/apt/trusted.gpg.d".into(),
        });
    }
    let out_dir = tempfile::tempdir().map_err(|source| ReleaseError::GpgvMissing {
        file: inrelease.to_owned(),
        source,
    })?;
    let signed = out_dir.path().join("Release");
    let mut cmd = Command::new("gpgv");
    cmd.arg("--status-fd").arg("1");
    for k in keyrings {
        cmd.arg("--keyring").arg(k);
    }
    cmd.arg("--output").arg(&signed).arg(inrelease);
    let output = cmd.output().map_err(|source| ReleaseError::GpgvMissing {
        file: inrelease.to_owned(),
        source,
    })?;
    let status = String::from_utf8_lossy(&output.stdout);
    let bad = status
        .lines()
        .any(|l| l.starts_with("[GNUPG:] BADSIG") || l.starts_with("[GNUPG:] EXPKEYSIG"));
    let good = status.lines().any(|l| l.starts_with("[GNUPG:] VALIDSIG"));
    let keyring_list = keyrings
        .iter()
        .map(|k| k.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    if bad || !good {
        let detail = String::from_utf8_lossy(&output.stderr)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        return Err(ReleaseError::BadSignature {
            file: inrelease.to_owned(),
            keyrings: keyring_list,
            detail: if detail.is_empty() {
                "no valid signature".into()
            } else {
                detail
            },
        });
    }
    std::fs::read_to_string(&signed).map_err(|e| ReleaseError::BadSignature {
        file: inrelease.to_owned(),
        keyrings: keyring_list,
        detail: format!("gpgv wrote no signed text: {e}"),
    })
}

/// What we use of a Release file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub codename: String,
    pub suite: String,
    pub version: String,
    /// Index path (relative to `dists/<suite>/`) → (size, sha256 hex).
    pub sha256: BTreeMap<String, (u64, String)>,
}

impl Release {
    /// Size and SHA256 of one index file, e.g. `main/binary-riscv64/Packages.xz`.
    pub fn index(&self, path: &str) -> Result<(u64, String), ReleaseError> {
        self.sha256
            .get(path)
            .cloned()
            .ok_or_else(|| ReleaseError::NotListed {
                file: format!("dists/{}/InRelease", self.codename),
                index: path.to_owned(),
            })
    }
}

/// Parse the (already verified) text of a Release file.
pub fn parse_release(text: &str, name: &str) -> Result<Release, ReleaseError> {
    let err = |message: String| ReleaseError::Parse {
        file: name.to_owned(),
        message,
    };
    let para: deb822_fast::Paragraph = text
        .parse::<deb822_fast::Deb822>()
        .map_err(|e| err(format!("not a deb822 document: {e}")))?
        .iter()
        .next()
        .cloned()
        .ok_or_else(|| err("empty".into()))?;
    let field = |f: &str| para.get(f).unwrap_or("").trim().to_owned();
    let mut sha256 = BTreeMap::new();
    let section = para
        .get("SHA256")
        .ok_or_else(|| err("no SHA256 field".into()))?;
    for line in section.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [hash, size, path] = parts[..] else {
            return Err(err(format!("bad SHA256 line {line:?}")));
        };
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(err(format!("bad hash in SHA256 line {line:?}")));
        }
        let size: u64 = size
            .parse()
            .map_err(|_| err(format!("bad size in SHA256 line {line:?}")))?;
        sha256.insert(path.to_owned(), (size, hash.to_ascii_lowercase()));
    }
    Ok(Release {
        codename: field("Codename"),
        suite: field("Suite"),
        version: field("Version"),
        sha256,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "Origin: Debian\nLabel: Debian\nSuite: stable\nVersion: 13.8\n\
Codename: trixie\nArchitectures: all amd64 riscv64\nComponents: main contrib\n\
MD5Sum:\n ace28eae5e140be3a7db18da10c6c135 54338128 main/binary-riscv64/Packages\n\
SHA256:\n 69f526a2fdf8eb1e37480991f4102f67ad16b868c5597e40a946d0af0828792f 54338128 main/binary-riscv64/Packages\n \
F60294DC64D700AFA90C1833CDA096D8B8DE1F033E99AB2969A99FB9EA4AFF1B  9387120 main/binary-riscv64/Packages.xz\n";

    #[test]
    fn sha256_section_is_parsed_and_md5_ignored() {
        let r = parse_release(SAMPLE, "InRelease").unwrap();
        assert_eq!(r.codename, "trixie");
        assert_eq!(r.version, "13.8");
        assert_eq!(r.sha256.len(), 2);
        let (size, hash) = r.index("main/binary-riscv64/Packages.xz").unwrap();
        assert_eq!(size, 9_387_120);
        assert_eq!(
            hash,
            "f60294dc64d700afa90c1833cda096d8b8de1f033e99ab2969a99fb9ea4aff1b"
        );
        let e = r.index("main/binary-amd64/Packages.xz").unwrap_err();
        assert!(e.to_string().contains("binary-amd64"), "{e}");
    }

    #[test]
    fn malformed_sha256_lines_are_errors() {
        let text = "Codename: x\nSHA256:\n nothex 12 main/Packages\n";
        assert!(parse_release(text, "R").is_err());
        let text = "Codename: x\nSHA256:\n 69f526a2fdf8eb1e37480991f4102f67ad16b868c5597e40a946d0af0828792f big main/Packages\n";
        assert!(parse_release(text, "R").is_err());
        assert!(parse_release("Codename: x\n", "R").is_err());
    }

    #[test]
    fn an_unsigned_file_is_rejected_by_gpgv() {
        let keyrings = default_keyrings();
        if keyrings.is_empty() || Command::new("gpgv").arg("--version").output().is_err() {
            eprintln!("SKIP: gpgv or debian-archive-keyring not installed");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("InRelease");
        let forged = format!(
            "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n{SAMPLE}\
             -----BEGIN PGP SIGNATURE-----\n\niQIzBAEBCAAdFiEE\n=abcd\n-----END PGP SIGNATURE-----\n"
        );
        std::fs::write(&f, forged).unwrap();
        let e = verify_inrelease(&f, &keyrings).unwrap_err();
        assert!(matches!(e, ReleaseError::BadSignature { .. }), "{e}");
        std::fs::write(&f, SAMPLE).unwrap();
        assert!(verify_inrelease(&f, &keyrings).is_err());
    }
}
