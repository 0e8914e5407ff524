//! The spool file reader: any bytes as a spool's contents. Whole records
//! (with a write time or in the format without one) read back exactly as
//! they were written (the checksum lets nothing else through), the lines
//! replay would send are events the writer stores within the contract,
//! and any bytes written as a record of either format read back.
#![no_main]

use activity_fuzz::check_event;
use activity_tracker::Activity;
use activity_tracker::fuzzing::{spool_record, spool_records};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (records, _corrupt) = spool_records(data);
    let mut at = 0;
    for (written_ms, payload) in &records {
        let record = spool_record(payload, *written_ms);
        assert_eq!(
            &data[at..at + record.len()],
            &record[..],
            "a record reads back as written"
        );
        at += record.len();
        for line in payload.split(|b| *b == b'\n') {
            // What replay sends on: the lines the strict reader accepts.
            if let Ok(activity) = Activity::from_wire_json(line) {
                check_event(&activity, None);
            }
        }
    }
    // The input as one record's payload, then a torn copy after it; the
    // write time taken from the input's first bytes, when it has them.
    let written_ms = data
        .get(..8)
        .map(|bytes| i64::from_le_bytes(bytes.try_into().expect("8 bytes")));
    for written_ms in [None, written_ms] {
        let mut file = spool_record(data, written_ms);
        let whole = file.len();
        file.extend_from_slice(&spool_record(data, written_ms)[..whole / 2]);
        let (back, corrupt) = spool_records(&file);
        assert_eq!(back, vec![(written_ms, data.to_vec())]);
        assert_eq!(corrupt, whole / 2 > 0);
    }
});
