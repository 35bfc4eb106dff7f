//! vessel's devices. They see guest memory and a bus only: the same code
//! serves guests run by the emulator and by KVM.
//!
//! - [`virtio`]: the virtio-mmio transport and the block, net, console and
//!   entropy devices.
//! - [`block`]: disk image back ends (raw files, qcow2).
//! - [`net`]: network back ends (tap).
//! - [`input`]: virtio-input as a power button the VMM presses.

pub mod block;
pub mod fuzzing;
pub mod input;
pub mod net;
pub mod virtio;

pub use virtio::mmio::VirtioMmio;
pub use virtio::{VirtioDevice, device_type};
