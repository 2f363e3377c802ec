#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| paddock_fuzz::targets::apache_conf(data));
