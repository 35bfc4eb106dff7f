//! Disk image back ends.
