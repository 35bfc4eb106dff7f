#![no_main]
//! Random guest memory and register traffic against virtio-console.

use libfuzzer_sys::fuzz_target;
use vessel_devices::fuzzing::{Target, run};

fuzz_target!(|data: &[u8]| {
    run(Target::Console, data);
});
