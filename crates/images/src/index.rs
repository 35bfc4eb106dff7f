//! The package index (`main/binary-<arch>/Packages.xz`) and the few
//! dependency steps we need: from the `linux-image-riscv64` metapackage to
//! the real kernel package it depends on.

use std::collections::HashMap;
use std::io::BufRead;

use thiserror::Error;

/// Errors reading the package index or finding a package in it.
#[derive(Debug, Error)]
pub enum IndexError {
    #[error("reading the package index {index}: {message}")]
    Parse { index: String, message: String },
    #[error("package {package} is not in {index}; is the suite or architecture right?")]
    Missing { package: String, index: String },
    #[error("package {package} in {index} has no usable {field} field")]
    BadField {
        package: String,
        index: String,
        field: &'static str,
    },
    #[error(
        "{package} in {index} depends on no package named like {pattern}; Debian changed its \
         kernel packaging: please report this"
    )]
    NoKernel {
        package: String,
        index: String,
        pattern: String,
    },
}

/// One binary package stanza, reduced to what a download needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageEntry {
    pub name: String,
    pub version: String,
    /// Path relative to the archive base, e.g. `pool/main/o/opensbi/opensbi_1.6-1_all.deb`.
    pub filename: String,
    pub size: u64,
    pub sha256: String,
    /// `Depends:` as groups of alternatives: `a | b, c` → `[[a, b], [c]]`,
    /// each alternative as (name, version constraint text).
    pub depends: Vec<Vec<(String, String)>>,
}

/// Parse a `Depends:` value.
pub fn parse_depends(value: &str) -> Vec<Vec<(String, String)>> {
    value
        .split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(|group| {
            group
                .split('|')
                .map(|alt| {
                    let alt = alt.trim();
                    let (name, rest) = match alt.find(|c: char| c.is_whitespace() || c == '(') {
                        Some(i) => (&alt[..i], alt[i..].trim()),
                        None => (alt, ""),
                    };
                    let name = name.split(':').next().unwrap_or(name);
                    let constraint = rest.trim_start_matches('(').trim_end_matches(')').trim();
                    (name.to_owned(), constraint.to_owned())
                })
                .collect()
        })
        .collect()
}

/// Read a Packages file, keeping only the stanzas whose name `keep` accepts.
/// Several stanzas may share a name (versions); all are kept, in file order.
pub fn parse_packages<R: BufRead>(
    reader: R,
    index: &str,
    keep: impl Fn(&str) -> bool,
) -> Result<HashMap<String, Vec<PackageEntry>>, IndexError> {
    let mut out: HashMap<String, Vec<PackageEntry>> = HashMap::new();
    for para in deb822_fast::Deb822::iter_paragraphs_from_reader(reader) {
        let para = para.map_err(|e| IndexError::Parse {
            index: index.to_owned(),
            message: e.to_string(),
        })?;
        let Some(name) = para.get("Package").map(str::trim) else {
            continue;
        };
        if !keep(name) {
            continue;
        }
        let bad = |field| IndexError::BadField {
            package: name.to_owned(),
            index: index.to_owned(),
            field,
        };
        let filename = para
            .get("Filename")
            .map(str::trim)
            .filter(|f| !f.is_empty() && !f.contains("..") && !f.starts_with('/'))
            .ok_or_else(|| bad("Filename"))?;
        let size = para
            .get("Size")
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| bad("Size"))?;
        let sha256 = para
            .get("SHA256")
            .map(|s| s.trim().to_ascii_lowercase())
            .filter(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| bad("SHA256"))?;
        let entry = PackageEntry {
            name: name.to_owned(),
            version: para.get("Version").unwrap_or("").trim().to_owned(),
            filename: filename.to_owned(),
            size,
            sha256,
            depends: parse_depends(para.get("Depends").unwrap_or("")),
        };
        out.entry(entry.name.clone()).or_default().push(entry);
    }
    Ok(out)
}

/// Look a package up; with several versions, the last stanza wins (Debian
/// lists one version per suite, so this only matters for odd mirrors).
pub fn find<'a>(
    packages: &'a HashMap<String, Vec<PackageEntry>>,
    name: &str,
    index: &str,
) -> Result<&'a PackageEntry, IndexError> {
    packages
        .get(name)
        .and_then(|v| v.last())
        .ok_or_else(|| IndexError::Missing {
            package: name.to_owned(),
            index: index.to_owned(),
        })
}

/// From a kernel metapackage (`linux-image-riscv64`) to the versioned kernel
/// package it depends on (`linux-image-6.12.*-riscv64`), honouring an `(= V)` pin.
pub fn resolve_kernel<'a>(
    packages: &'a HashMap<String, Vec<PackageEntry>>,
    meta: &str,
    flavour: &str,
    index: &str,
) -> Result<&'a PackageEntry, IndexError> {
    let meta_entry = find(packages, meta, index)?;
    let suffix = format!("-{flavour}");
    for group in &meta_entry.depends {
        for (name, constraint) in group {
            let is_kernel = name.starts_with("linux-image-")
                && name.ends_with(&suffix)
                && name != meta
                && name["linux-image-".len()..]
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_digit());
            if !is_kernel {
                continue;
            }
            let candidates = packages.get(name).ok_or_else(|| IndexError::Missing {
                package: name.clone(),
                index: index.to_owned(),
            })?;
            let pinned = constraint
                .strip_prefix('=')
                .map(str::trim)
                .and_then(|v| candidates.iter().rev().find(|c| c.version == v));
            return pinned
                .or(candidates.last())
                .ok_or_else(|| IndexError::Missing {
                    package: name.clone(),
                    index: index.to_owned(),
                });
        }
    }
    Err(IndexError::NoKernel {
        package: meta.to_owned(),
        index: index.to_owned(),
        pattern: format!("linux-image-<version>{suffix}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // An excerpt of trixie's main/binary-riscv64/Packages, trimmed to the fields we read.
    const EXCERPT: &str = "\
Package: busybox-static
Source: busybox (1:1.37.0-6)
Version: 1:1.37.0-6+b9
Provides: busybox
Filename: pool/main/b/busybox/busybox-static_1.37.0-6+b9_riscv64.deb
Size: 941532
SHA256: 4add476d2b185c5b487c285b38d790f0881a7e4a8e2ddde835f917e770eb8633
Description: Standalone rescue shell with tons of builtin utilities
 BusyBox combines tiny versions of many common UNIX utilities into a single
 small executable.

Package: linux-image-6.12.107+deb13-riscv64
Source: linux
Version: 6.12.107-1
Depends: kmod, initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool
Filename: pool/main/l/linux/linux-image-6.12.107+deb13-riscv64_6.12.107-1_riscv64.deb
Size: 112012420
SHA256: abe9f65d74b434692149482b031db7a2aaf832921e09f69f775293c0e0c5799c

Package: linux-image-riscv64
Source: linux
Version: 6.12.117-1
Provides: linux-image-generic
Depends: linux-image-6.12.117+deb13-riscv64 (= 6.12.117-1)
Filename: pool/main/l/linux/linux-image-riscv64_6.12.117-1_riscv64.deb
Size: 1444
SHA256: c1685361464fce280b85273c0914696c4167ab4d94a335c22401b52a1f7f9959

Package: linux-image-6.12.117+deb13-riscv64
Source: linux
Version: 6.12.117-1
Depends: kmod, initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool
Filename: pool/main/l/linux/linux-image-6.12.117+deb13-riscv64_6.12.117-1_riscv64.deb
Size: 112593968
SHA256: f5d9424b6f6a4518197202effc7e8eeaa90f8d73466c2dba2470f6ea7fb4f55c

Package: opensbi
Version: 1.6-1
Architecture: all
Filename: pool/main/o/opensbi/opensbi_1.6-1_all.deb
Size: 204072
SHA256: dc4a43bd21a0ca11771ed8b19ee6fa8476d1d0f4976bd0b27c0357c699d27e1e

Package: zsh
Version: 5.9-8
Filename: pool/main/z/zsh/zsh_5.9-8_riscv64.deb
Size: 1
SHA256: 0000000000000000000000000000000000000000000000000000000000000000
";

    fn keep(n: &str) -> bool {
        n.starts_with("linux-image-") || n == "opensbi" || n == "busybox-static"
    }

    #[test]
    fn parses_and_filters_stanzas() {
        let p = parse_packages(EXCERPT.as_bytes(), "Packages", keep).unwrap();
        assert_eq!(p.len(), 5);
        assert!(!p.contains_key("zsh"));
        let bb = find(&p, "busybox-static", "Packages").unwrap();
        assert_eq!(bb.version, "1:1.37.0-6+b9");
        assert_eq!(bb.size, 941_532);
        assert_eq!(
            bb.filename,
            "pool/main/b/busybox/busybox-static_1.37.0-6+b9_riscv64.deb"
        );
        let e = find(&p, "qemu", "Packages").unwrap_err();
        assert!(e.to_string().contains("qemu"));
    }

    #[test]
    fn kernel_metapackage_resolves_to_the_pinned_kernel() {
        let p = parse_packages(EXCERPT.as_bytes(), "Packages", keep).unwrap();
        let k = resolve_kernel(&p, "linux-image-riscv64", "riscv64", "Packages").unwrap();
        assert_eq!(k.name, "linux-image-6.12.117+deb13-riscv64");
        assert_eq!(k.version, "6.12.117-1");
        assert_eq!(
            k.sha256,
            "f5d9424b6f6a4518197202effc7e8eeaa90f8d73466c2dba2470f6ea7fb4f55c"
        );
    }

    #[test]
    fn missing_kernel_target_is_an_error() {
        let text: String = EXCERPT
            .split("\n\n")
            .filter(|s| !s.contains("Package: linux-image-6.12.117"))
            .collect::<Vec<_>>()
            .join("\n\n");
        let p = parse_packages(text.as_bytes(), "Packages", keep).unwrap();
        let e = resolve_kernel(&p, "linux-image-riscv64", "riscv64", "Packages").unwrap_err();
        assert!(
            matches!(e, IndexError::Missing { ref package, .. } if package == "linux-image-6.12.117+deb13-riscv64")
        );
    }

    #[test]
    fn depends_groups_and_alternatives() {
        let d = parse_depends("kmod, initramfs-tools (>= 0.120) | linux-initramfs-tool, libc6:any");
        assert_eq!(d.len(), 3);
        assert_eq!(d[1][0], ("initramfs-tools".into(), ">= 0.120".into()));
        assert_eq!(d[1][1].0, "linux-initramfs-tool");
        assert_eq!(d[2][0].0, "libc6");
    }

    #[test]
    fn bad_checksum_field_is_reported() {
        let text = "Package: opensbi\nVersion: 1\nFilename: pool/x.deb\nSize: 3\nSHA256: xyz\n";
        let e = parse_packages(text.as_bytes(), "Packages", keep).unwrap_err();
        assert!(
            matches!(
                e,
                IndexError::BadField {
                    field: "SHA256",
                    ..
                }
            ),
            "{e}"
        );
    }
}
