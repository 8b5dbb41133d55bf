#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| smelt::fuzzing::extract(data));
