//! Runtime benchmark: what the sandbox costs.
//!
//! `cargo bench -p ledgerbridge-tests --bench runtime` prints
//! 1. the compile time of each plugin (no cache);
//! 2. instantiate-and-call time of a lookup that does no I/O (the scripted
//!    plugin's `lookup-bill`), each call on a fresh store and instance;
//! 3. the same lookup implemented natively in Rust, and the ratio.

use ledgerbridge::runtime::bindings::{Bill, ConnectorError, Entry, EntryState};
use ledgerbridge::runtime::{Operation, Reply, Runtime, RuntimeConfig, Sandbox};
use ledgerbridge_tests::*;
use std::hint::black_box;
use std::time::{Duration, Instant};

const CALLS: usize = 20_000;
const WARMUP: usize = 500;

fn stats(mut samples: Vec<Duration>) -> (Duration, Duration, Duration) {
    samples.sort();
    let pick = |q: f64| samples[((samples.len() as f64 - 1.0) * q) as usize];
    (
        pick(0.5),
        pick(0.99),
        samples.iter().sum::<Duration>() / samples.len() as u32,
    )
}

/// The scripted plugin's lookup, natively: read the script, answer `none`.
fn native_lookup(
    settings: &[(String, String)],
    bill: &Bill,
    known: Option<&str>,
) -> Result<Option<Entry>, ConnectorError> {
    let answer = settings
        .iter()
        .find(|(k, _)| k == "lookup-bill")
        .map_or("none", |(_, v)| v.as_str());
    let msg = format!("scripted {answer} for lookup-bill");
    Ok(match answer {
        "found" => Some(Entry {
            id: known.map_or_else(|| format!("S-{}", bill.document_id), str::to_string),
            version: Some("1".into()),
            state: EntryState::Open,
            total: Some(bill.total),
        }),
        "booked" => return Err(ConnectorError::Booked(msg)),
        _ => None,
    })
}

/// Nanoseconds this thread has spent on a CPU (Linux); 0 elsewhere.
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio.block_on(async {
        println!(
            "ledgerbridge runtime benchmark ({} cores)\n",
            std::thread::available_parallelism().map_or(1, |n| n.get())
        );

        // 1. Compile times, no cache.
        let cold = Runtime::new(RuntimeConfig {
            cache_dir: None,
            ..RuntimeConfig::default()
        })
        .unwrap();
        println!("compile (cranelift, no cache), median of 3:");
        let plugins: [(&str, Vec<u8>); 3] = [
            ("csv", ledgerbridge::builtin::CSV.wasm.to_vec()),
            ("scripted", std::fs::read(SCRIPTED).unwrap()),
            ("hostile", std::fs::read(HOSTILE).unwrap()),
        ];
        for (name, bytes) in &plugins {
            let mut times = Vec::new();
            for _ in 0..3 {
                let p = cold.load(bytes.clone(), name).await.unwrap();
                times.push(p.compile_time);
            }
            times.sort();
            println!(
                "  {name:<10} {:>7} KiB  {:>8.1?}",
                bytes.len() / 1024,
                times[1]
            );
        }
        let cached = runtime();
        let warm = cached.load(plugins[0].1.clone(), "csv").await.unwrap();
        let warm = cached
            .load(plugins[0].1.clone(), "csv")
            .await
            .map(|p| p.compile_time)
            .unwrap_or(warm.compile_time);
        println!("  csv from the compile cache: {warm:.1?}\n");

        // 2. Instantiate and call, fresh store and instance every time.
        let plugin = cold.load(plugins[1].1.clone(), "scripted").await.unwrap();
        let sandbox = Sandbox {
            tenant_id: "t".into(),
            connection_id: "c".into(),
            ..Sandbox::default()
        };
        let bill = sample_bill("doc-1");
        let mut samples = Vec::with_capacity(CALLS);
        let mut cpu_start = 0;
        let mut wall_start = Instant::now();
        for i in 0..WARMUP + CALLS {
            if i == WARMUP {
                cpu_start = thread_cpu_ns();
                wall_start = Instant::now();
            }
            let op = Operation::LookupBill {
                bill: bill.clone(),
                known_id: None,
            };
            let t = Instant::now();
            let out = cold.call(&plugin, &sandbox, "key", op).await;
            let dt = t.elapsed();
            assert_eq!(out.result, Ok(Reply::Found(None)));
            if i >= WARMUP {
                samples.push(dt);
            }
        }
        let cpu_per_call = Duration::from_nanos((thread_cpu_ns() - cpu_start) / CALLS as u64);
        let wall_per_call = wall_start.elapsed() / CALLS as u32;
        let (wasm_median, wasm_p99, wasm_mean) = stats(samples);
        println!("instantiate + lookup-bill (no I/O), {CALLS} calls, one at a time:");
        println!("  median {wasm_median:>9.2?}   p99 {wasm_p99:>9.2?}   mean {wasm_mean:>9.2?}");
        println!("  on-CPU time per call {cpu_per_call:.2?} of {wall_per_call:.2?} wall");

        let mut phases = Vec::new();
        for _ in 0..5_000 {
            phases.push(cold.time_phases(&plugin, &sandbox, &bill).await);
        }
        let med = |f: fn(&ledgerbridge::runtime::Phases) -> Duration| {
            stats(phases.iter().map(f).collect()).0
        };
        println!(
            "  phases (median): store {:.2?}, instantiate {:.2?}, call {:.2?}, drop {:.2?}",
            med(|p| p.store),
            med(|p| p.instantiate),
            med(|p| p.call),
            med(|p| p.drop)
        );

        // 3. The same lookup natively, with the same argument handling (the
        // bill is cloned per call in both).
        let settings: Vec<(String, String)> = Vec::new();
        let mut samples = Vec::with_capacity(CALLS);
        for i in 0..WARMUP + CALLS {
            let b = bill.clone();
            let t = Instant::now();
            let r = native_lookup(black_box(&settings), black_box(&b), black_box(None));
            let dt = t.elapsed();
            assert!(matches!(black_box(r), Ok(None)));
            if i >= WARMUP {
                samples.push(dt);
            }
        }
        let (native_median, native_p99, native_mean) = stats(samples);
        println!("native Rust lookup, {CALLS} calls:");
        println!(
            "  median {native_median:>9.2?}   p99 {native_p99:>9.2?}   mean {native_mean:>9.2?}"
        );
        let ratio = wasm_median.as_nanos() as f64 / native_median.as_nanos().max(1) as f64;
        println!(
            "\nsandbox cost: {:.2?} per operation (median), {ratio:.0}x the native call",
            wasm_median.saturating_sub(native_median)
        );
    });
}
