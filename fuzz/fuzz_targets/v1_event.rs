//! A version 1 entry's `data` (the lenient reader, `decode_entry`): what it
//! accepts is stored within the contract and reads back.
#![no_main]

use activity_fuzz::check_event;
use activity_processor::consumer::decode::{decode_entry, entry_time};
use libfuzzer_sys::fuzz_target;

const ENTRY_ID: &str = "1767323045000-0";

fuzz_target!(|data: &[u8]| {
    if let Ok(decoded) = decode_entry("fuzz", ENTRY_ID, Some(data)) {
        assert_eq!(decoded.arrived_at(), entry_time(ENTRY_ID));
        check_event(&decoded, decoded.arrived_at());
        // A redelivery reads the same event (the same id when it had none).
        let again = decode_entry("fuzz", ENTRY_ID, Some(data)).expect("read once, read again");
        assert_eq!(again.activity(), decoded.activity());
    }
});
