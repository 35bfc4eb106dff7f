#![no_main]
//! Random guest memory and register traffic against virtio-blk.

use libfuzzer_sys::fuzz_target;
use vessel_devices::fuzzing::{Target, run};

fuzz_target!(|data: &[u8]| {
    run(Target::Block, data);
});
