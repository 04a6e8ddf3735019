//! In-process cost of the data-key hot path: generate (random key + AES-256-GCM seal under a
//! key version) and decrypt (parse + open), with a one-entry encryption context. Compare with
//! the over-the-wire figures of the load generator in docs/benchmarks.md.

use std::collections::BTreeMap;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use kms::blob::Header;
use kms::keyring::{KeyState, KeyVersion, NamedKey};

fn sample_key() -> NamedKey {
    let version = KeyVersion::new(1, KeyState::Enabled, 0, &[0x42; 32]).expect("key version");
    NamedKey {
        id: uuid::Uuid::from_bytes([7; 16]),
        name: "bench".to_owned(),
        state: KeyState::Enabled,
        created_at: 0,
        versions: std::collections::BTreeMap::from([(1, Arc::new(version))]),
    }
}

fn datakey(c: &mut Criterion) {
    let key = sample_key();
    let context = BTreeMap::from([("tenant".to_owned(), "clinic-7".to_owned())]);
    c.bench_function("datakey_generate_32", |b| {
        b.iter(|| key.generate_data_key(32, &context).expect("generate"))
    });
    let blob = key.generate_data_key(32, &context).expect("generate").blob;
    c.bench_function("datakey_decrypt_32", |b| {
        b.iter(|| {
            let (header, body) = Header::parse(&blob).expect("parse");
            key.open(&header, body, &context).expect("open")
        })
    });
}

criterion_group!(benches, datakey);
criterion_main!(benches);
