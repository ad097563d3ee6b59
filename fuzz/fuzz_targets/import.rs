#![no_main]
// See allot::fuzzing::import for the input's layout and what is exercised.
libfuzzer_sys::fuzz_target!(|data: &[u8]| allot::fuzzing::import(data));
