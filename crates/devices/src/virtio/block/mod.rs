//! virtio-blk (todo)
