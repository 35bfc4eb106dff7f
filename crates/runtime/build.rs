//! Links `vessel-runtime` as a position-dependent executable.
//!
//! The runtime is exec'd three times per container (create, start, delete),
//! so its start-up cost counts: as a PIE, the dynamic loader first applies
//! some 290 KiB of relocations, touching (and copying) about 70 pages on
//! every run. Linked with -no-pie, the linker resolves them once. The
//! shared libraries and the stack and heap stay randomised.

fn main() {
    println!("cargo:rustc-link-arg-bin=vessel-runtime=-no-pie");
}
