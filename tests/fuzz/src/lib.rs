//! The harnesses behind grantline's fuzz targets (`fuzz_targets/*.rs` are one-line wrappers).
//!
//! Each `run` function takes the fuzzer's input, must never panic on its own, and asserts the
//! properties users rely on; a failed assertion is a finding. Keeping the harnesses in a
//! library lets the seed generator (`examples/make_seeds.rs`) and the regression tests
//! (`tests/`) run exactly what the fuzzer runs.

pub mod envelope;
pub mod keys;
pub mod leaf;
pub mod note;
pub mod projector;
pub mod proofs;
