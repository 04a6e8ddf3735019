//! The tokio adapters, against the sync ones and over a pipe that forces partial reads and
//! writes.

use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

use super::*;

async fn encrypt_async(plaintext: &[u8], segment_size: u32) -> Vec<u8> {
    let mut writer = AsyncEncryptingWriter::new(
        Vec::new(),
        &key(),
        &context(),
        slots(),
        options(segment_size),
    )
    .unwrap();
    for piece in plaintext.chunks(1000) {
        writer.write_all(piece).await.unwrap();
    }
    writer.finish().await.unwrap()
}

async fn decrypt_async(file: &[u8]) -> Result<Vec<u8>> {
    let mut reader = AsyncDecryptingReader::open(file, &key(), &context()).await?;
    let mut plaintext = Vec::new();
    reader
        .read_to_end(&mut plaintext)
        .await
        .map_err(Error::from_io)?;
    Ok(plaintext)
}

#[tokio::test]
async fn async_round_trip_at_boundaries() {
    for len in [
        0,
        1,
        SMALL_LEN - 1,
        SMALL_LEN,
        SMALL_LEN + 1,
        3 * SMALL_LEN + 7,
    ] {
        let plaintext = pattern(len);
        let file = encrypt_async(&plaintext, SMALL).await;

        assert_eq!(
            decrypt_async(&file).await.unwrap(),
            plaintext,
            "{len}: async both ways"
        );
        assert_eq!(decrypt(&file).unwrap(), plaintext, "{len}: sync reader");
        let sync_file = encrypt(&plaintext, SMALL);
        assert_eq!(
            decrypt_async(&sync_file).await.unwrap(),
            plaintext,
            "{len}: async reader"
        );
    }
}

#[tokio::test]
async fn async_writer_matches_sync_writer() {
    let plaintext = pattern(4 * SMALL_LEN + 99);
    let fixed = || {
        Header::create_with(&key(), &context(), slots(), options(SMALL), [1; 32], [2; 7]).unwrap()
    };

    let (header, cipher) = fixed();
    let mut sync_writer = EncryptingWriter::with_header(Vec::new(), header, cipher).unwrap();
    sync_writer.write_all(&plaintext).unwrap();
    let sync_file = sync_writer.finish().unwrap();

    let (header, cipher) = fixed();
    let mut async_writer = AsyncEncryptingWriter::with_header(Vec::new(), header, cipher).unwrap();
    for piece in plaintext.chunks(333) {
        async_writer.write_all(piece).await.unwrap();
    }
    let async_file = async_writer.finish().await.unwrap();

    assert_eq!(async_file, sync_file);
}

#[tokio::test]
async fn async_adapters_over_small_pipes() {
    let plaintext = pattern(6 * SMALL_LEN + 5);
    let expected = plaintext.clone();

    // Pipes of 100 bytes make every read and write partial and pending in turn.
    let (encrypt_in, encrypted_out) = duplex(100);
    let (decrypt_in, mut plaintext_out) = duplex(100);
    let writer = tokio::spawn(async move {
        let mut writer =
            AsyncEncryptingWriter::new(encrypt_in, &key(), &context(), slots(), options(SMALL))
                .unwrap();
        writer.write_all(&plaintext).await.unwrap();
        writer.shutdown().await.unwrap();
    });
    let reader = tokio::spawn(async move {
        let mut reader = AsyncDecryptingReader::open(encrypted_out, &key(), &context())
            .await
            .unwrap();
        let mut forward = decrypt_in;
        tokio::io::copy(&mut reader, &mut forward).await.unwrap();
        forward.shutdown().await.unwrap();
    });
    let mut received = Vec::new();
    plaintext_out.read_to_end(&mut received).await.unwrap();
    writer.await.unwrap();
    reader.await.unwrap();

    assert_eq!(received, expected);
}

#[tokio::test]
async fn async_reader_rejects_tampering() {
    let (head, segments) = split(&encrypt(&pattern(3 * SMALL_LEN + 7), SMALL));

    let mut altered = segments.clone();
    altered[1][0] ^= 1;
    let err = decrypt_async(&join(&head, &altered.iter().collect::<Vec<_>>()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::SegmentAuthFailed { index: 1 }),
        "{err:?}"
    );

    let truncated = join(&head, &segments.iter().take(2).collect::<Vec<_>>());
    let err = decrypt_async(&truncated).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Truncated {
                complete_segments: 2
            }
        ),
        "{err:?}"
    );

    let reordered = join(
        &head,
        &[&segments[1], &segments[0], &segments[2], &segments[3]],
    );
    let err = decrypt_async(&reordered).await.unwrap_err();
    assert!(
        matches!(err, Error::SegmentAuthFailed { index: 0 }),
        "{err:?}"
    );
}

#[tokio::test]
async fn async_reader_checks_context_and_key() {
    let file = encrypt(&pattern(100), SMALL);

    let err = AsyncDecryptingReader::open(file.as_slice(), &other_key(), &context())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::CommitmentMismatch), "{err:?}");

    let err = AsyncDecryptingReader::open(file.as_slice(), &key(), &Context::new())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ContextMismatch), "{err:?}");

    let err = read_header_async(&mut &b"KMSF\x01"[..]).await.unwrap_err();
    assert!(matches!(err, Error::TruncatedHeader), "{err:?}");
}

#[tokio::test]
async fn async_writer_without_shutdown_truncates() {
    let (pipe_in, mut pipe_out) = duplex(1 << 20);
    let mut writer =
        AsyncEncryptingWriter::new(pipe_in, &key(), &context(), slots(), options(SMALL)).unwrap();
    writer.write_all(&pattern(2 * SMALL_LEN + 1)).await.unwrap();
    writer.flush().await.unwrap();
    drop(writer);

    let mut file = Vec::new();
    pipe_out.read_to_end(&mut file).await.unwrap();
    let err = decrypt(&file).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Truncated {
                complete_segments: 2
            }
        ),
        "{err:?}"
    );
}
