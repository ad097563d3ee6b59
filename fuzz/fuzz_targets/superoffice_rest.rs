#![no_main]
// See allot::fuzzing::superoffice_rest for the input's layout and what is exercised.
libfuzzer_sys::fuzz_target!(|data: &[u8]| allot::fuzzing::superoffice_rest(data));
