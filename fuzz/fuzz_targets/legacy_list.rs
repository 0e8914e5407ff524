//! An element of the legacy LIST (the original design's JSON): what the
//! reader accepts is stored within the contract and reads back.
#![no_main]

use activity_fuzz::{check_event, written_at};
use activity_processor::consumer::decode::decode_legacy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(decoded) = decode_legacy(data, written_at()) {
        check_event(&decoded, Some(written_at()));
        let again = decode_legacy(data, written_at()).expect("read once, read again");
        assert_eq!(again.activity().id, decoded.activity().id);
    }
});
