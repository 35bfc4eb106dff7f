//! virtio-console (todo)
