//! Load generator for `kmsd`: N concurrent clients issue data-key requests over one keep-alive
//! connection pool for a fixed time, then the tool prints throughput and latency percentiles.
//!
//! ```text
//! KMS_TOKEN=... kms-load --addr https://127.0.0.1:8443 --cacert ca.pem --key bench \
//!     --op generate --concurrency 16 --duration 10s
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use clap::{Parser, ValueEnum};
use client_sdk::secrecy::SecretString;
use client_sdk::{Client, ClientBuilder, Context, DataKeySize, RetryPolicy};
use hdrhistogram::Histogram;

/// The operation each request performs.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Op {
    /// POST /v1/keys/{key}/datakey, 32-byte key with plaintext.
    Generate,
    /// POST /v1/decrypt of one pre-made data-key blob.
    Decrypt,
}

/// Measures data-key throughput and latency against a running kmsd.
#[derive(Debug, Parser)]
struct Args {
    /// Daemon address.
    #[arg(long, env = "KMS_ADDR", default_value = "https://127.0.0.1:8443")]
    addr: String,
    /// CA certificate to trust.
    #[arg(long, env = "KMS_CACERT")]
    cacert: Option<std::path::PathBuf>,
    /// Token with generate and decrypt on the key; prefer the environment variable.
    #[arg(long, env = "KMS_TOKEN", hide_env_values = true)]
    token: String,
    /// Key name.
    #[arg(long)]
    key: String,
    /// Operation to measure.
    #[arg(long, value_enum, default_value = "generate")]
    op: Op,
    /// Concurrent clients.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Measured duration, such as 10s.
    #[arg(long, default_value = "10s")]
    duration: humantime::Duration,
    /// Unmeasured warm-up before the measurement.
    #[arg(long, default_value = "2s")]
    warmup: humantime::Duration,
}

fn context() -> Context {
    Context::from([("tenant".to_owned(), "clinic-7".to_owned())])
}

async fn one_request(client: &Client, args: &Args, blob: &[u8]) -> bool {
    match args.op {
        Op::Generate => client
            .generate_data_key(&args.key, DataKeySize::Bytes32, &context(), true)
            .await
            .is_ok(),
        Op::Decrypt => client.decrypt(blob, &context()).await.is_ok(),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Arc::new(Args::parse());
    let mut builder = ClientBuilder::new(args.addr.clone())
        .token(SecretString::from(args.token.clone()))
        .retry(RetryPolicy::none());
    if let Some(ca) = &args.cacert {
        builder = builder.ca_cert(ca.clone());
    }
    let client = Arc::new(builder.build()?);
    let sample = client
        .generate_data_key(&args.key, DataKeySize::Bytes32, &context(), false)
        .await?;
    let blob = Arc::new(sample.ciphertext);

    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let (client, args, blob) = (Arc::clone(&client), Arc::clone(&args), Arc::clone(&blob));
        let (measuring, stop, errors) = (
            Arc::clone(&measuring),
            Arc::clone(&stop),
            Arc::clone(&errors),
        );
        tasks.push(tokio::spawn(async move {
            let mut histogram =
                Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
            while !stop.load(Ordering::Relaxed) {
                let start = Instant::now();
                let ok = one_request(&client, &args, &blob).await;
                if measuring.load(Ordering::Relaxed) {
                    if ok {
                        let micros = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
                        histogram.saturating_record(micros.max(1));
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            histogram
        }));
    }
    tokio::time::sleep(*args.warmup).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(*args.duration).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);

    let mut total = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for task in tasks {
        total.add(task.await?)?;
    }
    let rate = total.len() as f64 / elapsed.as_secs_f64();
    println!(
        "| {:?} | {} | {:.0} | {:.2} | {:.2} | {} |",
        args.op,
        args.concurrency,
        rate,
        total.value_at_quantile(0.50) as f64 / 1000.0,
        total.value_at_quantile(0.99) as f64 / 1000.0,
        errors.load(Ordering::Relaxed)
    );
    Ok(())
}
