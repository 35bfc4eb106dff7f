//! Network back ends for virtio-net.

pub mod tap;

pub use tap::{Tap, TapError};
