#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| grantline_fuzz::leaf::run(data));
