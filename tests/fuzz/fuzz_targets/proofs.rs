#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| grantline_fuzz::proofs::run(data));
