#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    punchline_fuzz::session::check(data);
});
