//! The admin API's keyset cursor: a cursor the reader accepts names a time
//! PostgreSQL can hold and encodes back to itself; every stored position
//! encodes to a cursor that reads back.
#![no_main]

use activity_store::fuzzing::{decode_cursor, encode_cursor};
use chrono::DateTime;
use libfuzzer_sys::fuzz_target;
use uuid::Uuid;

/// 4713 BC, the start of PostgreSQL's `timestamptz` range.
const PG_MIN_MICROS: i64 = -210_866_803_200_000_000;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some((at, id)) = decode_cursor(text) {
            assert!(at.timestamp_micros() >= PG_MIN_MICROS, "{text}: {at}");
            assert_eq!(
                encode_cursor(at, id).to_ascii_lowercase(),
                text.to_ascii_lowercase().replace('-', ""),
                "{text}"
            );
        }
    }
    if data.len() >= 24 {
        let micros = i64::from_le_bytes(data[..8].try_into().unwrap());
        let id = Uuid::from_bytes(data[8..24].try_into().unwrap());
        if let Some(at) =
            DateTime::from_timestamp_micros(micros).filter(|_| micros >= PG_MIN_MICROS)
        {
            let cursor = encode_cursor(at, id);
            assert_eq!(decode_cursor(&cursor), Some((at, id)), "{cursor}");
        }
    }
});
