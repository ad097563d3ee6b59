#![no_main]
// See allot::fuzzing::config for the input's layout and what is exercised.
libfuzzer_sys::fuzz_target!(|data: &[u8]| allot::fuzzing::config(data));
