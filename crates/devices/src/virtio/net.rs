//! virtio-net (todo)
