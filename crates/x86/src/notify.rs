//! Virtio queue notifications through ioeventfds: KVM signals an eventfd
//! when the guest writes a queue index to a device's QueueNotify register,
//! without an exit to the VMM, and a worker thread per device (named
//! `vessel-virtio<N>`) processes the queue — Firecracker's arrangement.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use vessel_devices::VirtioMmio;
use vessel_kvm::{EFD_NONBLOCK, EventFd};

/// The offset of QueueNotify in a virtio-mmio register window.
pub const QUEUE_NOTIFY: u64 = 0x50;

/// A device's notification worker; stopped and joined on drop.
pub struct NotifyWorker {
    stop: EventFd,
    thread: Option<JoinHandle<()>>,
}

impl NotifyWorker {
    /// Serve `queues` (queue index, its ioeventfd) of `device` on a thread.
    pub fn spawn(
        name: String,
        device: Arc<Mutex<VirtioMmio>>,
        queues: Vec<(u32, EventFd)>,
    ) -> std::io::Result<Self> {
        let stop = EventFd::new(EFD_NONBLOCK)?;
        let stop_worker = stop.try_clone()?;
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || serve(&device, &queues, &stop_worker))?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for NotifyWorker {
    fn drop(&mut self) {
        let _ = self.stop.write(1);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(device: &Mutex<VirtioMmio>, queues: &[(u32, EventFd)], stop: &EventFd) {
    use std::os::fd::AsRawFd;
    let mut fds: Vec<libc::pollfd> = std::iter::once(stop.as_raw_fd())
        .chain(queues.iter().map(|(_, e)| e.as_raw_fd()))
        .map(|fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    loop {
        // SAFETY: `fds` is a live, correctly sized array of pollfd structs
        // whose descriptors stay open for the whole call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        if fds[0].revents != 0 {
            return;
        }
        for (pfd, (index, event)) in fds[1..].iter().zip(queues) {
            if pfd.revents & libc::POLLIN != 0 && event.read().is_ok() {
                device
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .notify_queue(*index);
            }
        }
    }
}
