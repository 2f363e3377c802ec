#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| paddock_fuzz::targets::hop(data));
