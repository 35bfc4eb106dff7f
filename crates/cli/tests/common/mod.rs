//! Shared by the Linux end-to-end tests of `vessel run`: the cached Debian
//! images, and test data.

#![allow(dead_code)]

use vessel_images::download::DownloadError;
use vessel_images::sources::SourcesError;
use vessel_images::{FetchOptions, ImageError, Manifest};

/// The debian-riscv64 image from the cache, fetched on first use, or None
/// (after saying why) when it is not cached and the archive is unreachable.
pub fn image_or_skip() -> Option<Manifest> {
    named_image_or_skip(vessel_images::DEBIAN_RISCV64)
}

/// The image `name` (e.g. `debian-amd64`) from the cache, fetched on first
/// use, or None (after saying why) when it is not cached and the archive is
/// unreachable.
pub fn named_image_or_skip(name: &str) -> Option<Manifest> {
    if let Ok(m) = vessel_images::load(name) {
        return Some(m);
    }
    match vessel_images::fetch(name, &FetchOptions::default()) {
        Ok(m) => Some(m),
        Err(e @ ImageError::Sources(SourcesError::NotFound { .. }))
        | Err(e @ ImageError::Download(DownloadError::Unreachable { .. })) => {
            eprintln!("SKIP: no {name} image and the Debian archive is not reachable: {e}");
            None
        }
        Err(e) => panic!("fetching {name} failed: {e}"),
    }
}

/// Deterministic bytes that are not all alike (xorshift).
pub fn pattern(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        out.extend_from_slice(&seed.to_le_bytes());
    }
    out.truncate(len);
    out
}
