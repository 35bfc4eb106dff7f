//! `--disk PATH[,ro][,format=raw|qcow2][,serial=ID]`: parsing a disk
//! specification and turning it into a virtio-blk device in one call.

use std::path::PathBuf;

use super::{BlockError, DiskOptions, Format, open_disk};
use crate::virtio::block::{Block, BlockOptions, ID_BYTES};

/// A parsed `--disk` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskSpec {
    pub path: PathBuf,
    pub read_only: bool,
    pub format: Option<Format>,
    pub serial: Option<String>,
}

/// Errors in a `--disk` value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DiskSpecError {
    #[error("--disk needs a path: PATH[,ro][,format=raw|qcow2][,serial=ID]")]
    NoPath,
    #[error("--disk option {0:?} is not one of ro, format=raw|qcow2, serial=ID")]
    UnknownOption(String),
    #[error("--disk format {0:?} is not raw or qcow2")]
    BadFormat(String),
    #[error("--disk serial {0:?} must be 1 to 20 printable ASCII characters")]
    BadSerial(String),
}

impl std::str::FromStr for DiskSpec {
    type Err = DiskSpecError;

    fn from_str(s: &str) -> Result<Self, DiskSpecError> {
        let mut parts = s.split(',');
        let path = parts
            .next()
            .filter(|p| !p.is_empty())
            .ok_or(DiskSpecError::NoPath)?;
        let mut spec = DiskSpec {
            path: PathBuf::from(path),
            read_only: false,
            format: None,
            serial: None,
        };
        for opt in parts {
            match opt.split_once('=') {
                None if opt == "ro" => spec.read_only = true,
                Some(("format", f)) => {
                    spec.format = Some(
                        f.parse()
                            .map_err(|_| DiskSpecError::BadFormat(f.to_string()))?,
                    )
                }
                Some(("serial", id)) => {
                    if id.is_empty()
                        || id.len() > ID_BYTES
                        || !id.bytes().all(|b| b.is_ascii_graphic())
                    {
                        return Err(DiskSpecError::BadSerial(id.to_string()));
                    }
                    spec.serial = Some(id.to_string());
                }
                _ => return Err(DiskSpecError::UnknownOption(opt.to_string())),
            }
        }
        Ok(spec)
    }
}

impl DiskSpec {
    /// Open the image and build the virtio-blk device.
    pub fn open(&self) -> Result<Block, BlockError> {
        let disk = open_disk(
            &self.path,
            &DiskOptions {
                read_only: self.read_only,
                format: self.format,
            },
        )?;
        Block::new(
            disk,
            BlockOptions {
                read_only: self.read_only,
                serial: self.serial.clone(),
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_option() {
        let s: DiskSpec = "/img/root.qcow2,ro,format=qcow2,serial=root-1"
            .parse()
            .unwrap();
        assert_eq!(s.path, PathBuf::from("/img/root.qcow2"));
        assert!(s.read_only);
        assert_eq!(s.format, Some(Format::Qcow2));
        assert_eq!(s.serial.as_deref(), Some("root-1"));
        let s: DiskSpec = "disk.img".parse().unwrap();
        assert!(!s.read_only && s.format.is_none() && s.serial.is_none());
    }

    #[test]
    fn refuses_bad_values() {
        assert_eq!("".parse::<DiskSpec>(), Err(DiskSpecError::NoPath));
        assert_eq!(",ro".parse::<DiskSpec>(), Err(DiskSpecError::NoPath));
        assert!(matches!(
            "a,rw".parse::<DiskSpec>(),
            Err(DiskSpecError::UnknownOption(_))
        ));
        assert!(matches!(
            "a,format=vmdk".parse::<DiskSpec>(),
            Err(DiskSpecError::BadFormat(_))
        ));
        assert!(matches!(
            "a,serial=012345678901234567890".parse::<DiskSpec>(),
            Err(DiskSpecError::BadSerial(_))
        ));
        assert!(matches!(
            "a,serial=a b".parse::<DiskSpec>(),
            Err(DiskSpecError::BadSerial(_))
        ));
    }

    #[test]
    fn opens_a_raw_disk_into_a_device() {
        use crate::virtio::VirtioDevice;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.img");
        std::fs::write(&p, vec![0u8; 8192]).unwrap();
        let spec: DiskSpec = format!("{},ro,serial=x", p.display()).parse().unwrap();
        let blk = spec.open().unwrap();
        assert_eq!(blk.sectors(), 16);
        assert_ne!(blk.features() & crate::virtio::block::features::RO, 0);
    }
}
