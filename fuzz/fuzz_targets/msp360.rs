#![no_main]
// See allot::fuzzing::msp360 for the input's layout and what is exercised.
libfuzzer_sys::fuzz_target!(|data: &[u8]| allot::fuzzing::msp360(data));
