//! Every response decoder and the framer on arbitrary bytes: none may panic or over-allocate.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    wazoo::__fuzz::decode_everything(data);
});
