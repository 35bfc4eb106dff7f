#![no_main]
//! Random guest memory and register traffic against virtio-input (the power button; op 4 presses it).

use libfuzzer_sys::fuzz_target;
use vessel_devices::fuzzing::{Target, run};

fuzz_target!(|data: &[u8]| {
    run(Target::Input, data);
});
