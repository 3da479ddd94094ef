//! Writes seed corpora for both targets into `corpus/<target>/` (relative to the current
//! directory, normally `broker-embedded/fuzz`): well-formed request frames for every
//! supported API and version, and record batches with every codec and a range of shapes.

use std::fs;
use std::path::Path;

use broker_embedded::record::{encode_batch, BatchSpec, Compression, Header, Record};

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    fs::create_dir_all(dir)?;
    fs::write(dir.join(name), bytes)
}

fn record(i: i64, key: Option<&[u8]>, value: Option<&[u8]>, headers: usize) -> Record {
    Record {
        offset: i,
        timestamp: 1_700_000_000_000 + i,
        key: key.map(|k| k.to_vec().into()),
        value: value.map(|v| v.to_vec().into()),
        headers: (0..headers)
            .map(|h| Header {
                key: format!("h{h}"),
                value: Some(b"hv".to_vec().into()),
            })
            .collect(),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let requests = Path::new("corpus/request_decode");
    for (i, frame) in broker_embedded::fuzzing::sample_request_frames()
        .iter()
        .enumerate()
    {
        write(requests, &format!("seed-{i:03}"), frame)?;
    }

    let batches = Path::new("corpus/record_batch");
    let shapes: Vec<Vec<Record>> = vec![
        vec![record(0, Some(b"k"), Some(b"v"), 0)],
        vec![record(0, None, Some(b"value"), 1)],
        vec![
            record(0, Some(b"a"), Some(b"1"), 0),
            record(1, Some(b"b"), None, 2),
            record(2, Some(b"c"), Some(b"333"), 0),
        ],
        (0..20)
            .map(|i| record(i, Some(b"key"), Some(b"some repeated value"), 0))
            .collect(),
    ];
    let codecs = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];
    let mut n = 0;
    for (s, records) in shapes.iter().enumerate() {
        for codec in codecs {
            for idempotent in [false, true] {
                let mut spec = BatchSpec {
                    compression: codec,
                    ..BatchSpec::default()
                };
                if idempotent {
                    spec.producer_id = 1000 + s as i64;
                    spec.producer_epoch = 0;
                    spec.base_sequence = 0;
                }
                let batch = encode_batch(&spec, records)?;
                // Flags: APPEND, plus REQUIRE_KEYS|LOG_APPEND_TIME for every other seed.
                let flags: u8 = if n % 2 == 0 { 16 } else { 16 | 8 | 32 };
                let mut input = vec![flags];
                input.extend_from_slice(&batch);
                write(batches, &format!("seed-{n:03}"), &input)?;
                n += 1;
            }
        }
    }
    println!("wrote request and record-batch seeds under corpus/");
    Ok(())
}
