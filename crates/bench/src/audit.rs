//! The access log alone, in this process: batched durable appends, proofs, and
//! verifying the whole log from its entries.

use anyhow::{bail, Result};
use lagesbild_audit::verify::LogVerifier;
use lagesbild_audit::{
    AuditLog, Decision, Direction, Entry, LogOptions, NoteSigner, Released, TokenFacts,
};
use std::time::Instant;

const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIOHaWrMWwg6ezaUR/h7TLOIoXIlX+NbUeqLV+Q+SVKPu\n-----END PRIVATE KEY-----\n";

/// An entry the size of a real inbound aggregate call.
fn entry(i: u64) -> Entry {
    Entry {
        time_micros: 1_764_000_000_000_000 + i as i64,
        direction: Direction::Inbound,
        peer_org: "stockholm-stad".into(),
        peer_fingerprint: format!("{:064x}", i),
        token: TokenFacts {
            sub: "node".into(),
            act: "analyst-anna".into(),
            jti: format!("{:032x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            purpose: "situation-picture".into(),
        },
        call: "/lagesbild.v1.AggregateService/Release".into(),
        request_digest: Some([(i % 251) as u8; 32]),
        decision: Decision::Allowed,
        code: 0,
        reason: String::new(),
        released: Released {
            cells: 40,
            values: 310,
            withheld: 12,
            epsilon_micros: 0,
        },
        response_digest: Some([(i % 241) as u8; 32]),
        receipt: None,
        refused_connection: None,
    }
}

pub async fn run(total: u64, writers: usize) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let signer = NoteSigner::from_pem("bench/org/audit", KEY.as_bytes())?;
    let verifier = signer.verifier();
    let log = AuditLog::open(&dir.path().join("audit"), signer, LogOptions::default())?;
    let sample = entry(0).encode().len();

    // Appends: `writers` tasks, each waiting for its own entry to be durable.
    let started = Instant::now();
    let per_writer = total / writers as u64;
    let mut tasks = Vec::new();
    for w in 0..writers as u64 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..per_writer {
                log.append(&entry(w * per_writer + i)).await?;
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let elapsed = started.elapsed();
    let size = log.size();
    println!(
        "appends: {size} entries of {sample} bytes, {writers} concurrent writers each awaiting durability: {:.2} s, {:.0} appends/s",
        elapsed.as_secs_f64(),
        size as f64 / elapsed.as_secs_f64()
    );
    println!("on disk: {:.1} MB", log.size_on_disk()? as f64 / 1e6);

    // Proofs at the full size.
    let rounds = 2000u64;
    let started = Instant::now();
    for i in 0..rounds {
        let index = (i * 7919) % size;
        let path = log.inclusion_proof(index, size)?;
        if path.is_empty() && size > 1 {
            bail!("empty proof");
        }
    }
    let inclusion = started.elapsed() / rounds as u32;
    let started = Instant::now();
    for i in 0..rounds {
        let old = 1 + (i * 104_729) % (size - 1);
        log.consistency_proof(old, size)?;
    }
    let consistency = started.elapsed() / rounds as u32;
    println!(
        "proofs at size {size}: inclusion {:.1} µs, consistency {:.1} µs (mean of {rounds})",
        inclusion.as_secs_f64() * 1e6,
        consistency.as_secs_f64() * 1e6
    );

    // Verify: read every entry back and recompute the tree and every kept checkpoint.
    let started = Instant::now();
    let mut verification = LogVerifier::new(verifier);
    for note in log.checkpoints()? {
        verification.checkpoint(&note, "the log");
    }
    verification.checkpoint(&log.latest().1, "the log (latest)");
    let mut next = 0;
    while next < size {
        let page = log.entries(next, 50_000, usize::MAX)?;
        for (index, leaf, bytes) in &page {
            verification.entry(*index, Some(leaf), bytes);
        }
        next = page.last().map(|(i, _, _)| i + 1).unwrap_or(size);
    }
    let report = verification.finish();
    let elapsed = started.elapsed();
    if !report.ok() {
        bail!("verification failed:\n{}", report.to_text());
    }
    println!(
        "verify: {} entries read back, leaves and {} checkpoint roots rechecked in {:.2} s",
        report.entries,
        report.checked.len(),
        elapsed.as_secs_f64()
    );
    log.close().await;
    Ok(())
}
