//! `distlock bench`: lock latency and throughput against a real `redis-server`, each
//! scenario next to the round-trip floor measured in the same run.
//!
//! The floor is what the same round trips cost without the lock library: `SET key token NX
//! PX ttl` followed by the release script by `EVALSHA`, written straight to one socket and
//! read back, one pair at a time. A scenario's ratio is its pairs per second over the
//! floor's; the machine's noise cancels out of the ratio, not out of the raw numbers.

use std::io::Write as _;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use distlock_core::resp::{self, Framer, Sink};
use distlock_core::script;
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::client::Client;
use crate::demo::{self, DemoOptions};
use crate::error::Error;

/// One scenario's result.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchResult {
    /// Scenario id and description.
    pub scenario: String,
    /// Lock operations (acquire + release pairs, or acquisitions) per second.
    pub ops_per_sec: f64,
    /// Latency quantiles in µs (of one acquire + release, or of the hand-off gap).
    pub p50_us: u64,
    /// 99th percentile, µs.
    pub p99_us: u64,
    /// 99.9th percentile, µs.
    pub p999_us: u64,
    /// `ops_per_sec` over the floor's pairs per second, measured in the same run.
    pub ratio_to_floor: Option<f64>,
    /// Anything else worth saying (fairness, overlaps).
    pub note: String,
}

/// A `redis-server` the bench started on a free loopback port; stopped on drop.
pub struct LocalRedis {
    child: Child,
    /// Its URL.
    pub url: String,
}

impl LocalRedis {
    /// Starts one, or says why it could not.
    pub fn start() -> std::io::Result<LocalRedis> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("cannot start redis-server ({e}); install it or pass --redis"),
                )
            })?;
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if started.elapsed() > Duration::from_secs(5) {
                return Err(std::io::Error::other(
                    "redis-server did not start within 5 s",
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(LocalRedis {
            child,
            url: format!("redis://127.0.0.1:{port}"),
        })
    }
}

impl Drop for LocalRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn histogram() -> Histogram<u64> {
    // 1 µs to 60 s at 3 significant figures; the bounds are constants, so this cannot fail.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

fn quantiles(h: &Histogram<u64>) -> (u64, u64, u64) {
    (
        h.value_at_quantile(0.50),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
    )
}

fn progress(label: &str, done: u64, left: Duration) {
    eprint!(
        "\r{label}: {done} ops, {:.0} s left    ",
        left.as_secs_f64()
    );
    let _ = std::io::stderr().flush();
}

/// The floor: `SET NX PX` + release `EVALSHA` pairs over one raw connection.
pub async fn floor(url: &str, duration: Duration) -> Result<BenchResult, Error> {
    let endpoint: crate::Endpoint = url.parse()?;
    let io = |e: std::io::Error| Error::Connect {
        endpoint: endpoint.to_string(),
        source: e,
    };
    let mut socket = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
        .await
        .map_err(io)?;
    socket.set_nodelay(true).map_err(io)?;
    let token = b"floor-token-0123456789abcdef";
    let mut set = vec![0u8; 256];
    let set_len = encode(&mut set, |s| {
        s.command(&[b"SET", b"distlock:{floor}", token, b"NX", b"PX", b"30000"])
    });
    let mut release = vec![0u8; 1024];
    let release_len = encode(&mut release, |s| {
        s.command(&[
            b"EVALSHA",
            &script::RELEASE.sha,
            b"3",
            b"distlock:{floor}",
            b"distlock:{floor}:holds",
            b"distlock:{floor}:signal",
            token,
            b"0",
            b"1000",
        ])
    });
    // Load the script once, as any client would.
    let mut load = vec![0u8; 1024];
    let load_len = encode(&mut load, |s| {
        s.command(&[b"SCRIPT", b"LOAD", script::RELEASE.source.as_bytes()])
    });
    round_trip(&mut socket, &load[..load_len])
        .await
        .map_err(io)?;
    let mut h = histogram();
    let started = Instant::now();
    let mut pairs = 0u64;
    while started.elapsed() < duration {
        let t = Instant::now();
        round_trip(&mut socket, &set[..set_len]).await.map_err(io)?;
        round_trip(&mut socket, &release[..release_len])
            .await
            .map_err(io)?;
        let _ = h.record(t.elapsed().as_micros().max(1) as u64);
        pairs += 1;
        if pairs.is_multiple_of(2000) {
            progress("floor", pairs, duration.saturating_sub(started.elapsed()));
        }
    }
    let (p50, p99, p999) = quantiles(&h);
    Ok(BenchResult {
        scenario: "floor: raw SET NX PX + EVALSHA release, one socket".into(),
        ops_per_sec: pairs as f64 / started.elapsed().as_secs_f64(),
        p50_us: p50,
        p99_us: p99,
        p999_us: p999,
        ratio_to_floor: Some(1.0),
        note: String::new(),
    })
}

fn encode(buf: &mut [u8], write: impl Fn(&mut dyn Sink)) -> usize {
    // The buffers above are sized for these commands.
    resp::encode_into(buf, write).expect("bench command fits its buffer")
}

/// Writes one command and reads exactly one reply.
async fn round_trip(socket: &mut TcpStream, command: &[u8]) -> std::io::Result<()> {
    socket.write_all(command).await?;
    let mut framer: Framer<1024> = Framer::new();
    let mut buf = [0u8; 1024];
    loop {
        if let Some(_len) = framer
            .next_frame_len()
            .map_err(|e| std::io::Error::other(e.to_string()))?
        {
            return Ok(());
        }
        let n = socket.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "server closed",
            ));
        }
        framer.push(&buf[..n]);
    }
}

/// A: one client, one name, acquire + release in a loop.
pub async fn uncontended(
    client: &Client,
    label: &str,
    duration: Duration,
) -> Result<BenchResult, Error> {
    let mut h = histogram();
    let started = Instant::now();
    let mut pairs = 0u64;
    while started.elapsed() < duration {
        let t = Instant::now();
        let guard = client
            .lock("bench:a")
            .ttl(Duration::from_secs(30))
            .try_acquire()
            .await?;
        guard.release().await?;
        let _ = h.record(t.elapsed().as_micros().max(1) as u64);
        pairs += 1;
        if pairs.is_multiple_of(1000) {
            progress(label, pairs, duration.saturating_sub(started.elapsed()));
        }
    }
    let (p50, p99, p999) = quantiles(&h);
    Ok(BenchResult {
        scenario: label.into(),
        ops_per_sec: pairs as f64 / started.elapsed().as_secs_f64(),
        p50_us: p50,
        p99_us: p99,
        p999_us: p999,
        ratio_to_floor: None,
        note: String::new(),
    })
}

/// B: workers contend on one name, holding ~1 ms each (the demo, measured).
pub async fn contended(
    client: &Client,
    workers: usize,
    duration: Duration,
) -> Result<BenchResult, Error> {
    let options = DemoOptions {
        workers,
        duration,
        hold: Duration::from_millis(1),
        name: "bench:b".into(),
        progress: true,
    };
    let report = demo::run(client, &options).await?;
    let us = |q| {
        report
            .handoff_quantile(q)
            .map_or(0, |d| d.as_micros() as u64)
    };
    let min = report.per_worker.iter().min().copied().unwrap_or(0);
    let max = report.per_worker.iter().max().copied().unwrap_or(0);
    Ok(BenchResult {
        scenario: format!("B: {workers} workers on one name, ~1 ms hold (latency = hand-off gap)"),
        ops_per_sec: report.acquisitions() as f64 / report.elapsed.as_secs_f64(),
        p50_us: us(0.50),
        p99_us: us(0.99),
        p999_us: us(0.999),
        ratio_to_floor: None,
        note: format!(
            "per worker min {min} max {max}; overlaps {}; counter {}",
            report.overlaps,
            if report.counter == report.acquisitions() {
                "exact"
            } else {
                "LOST UPDATES"
            }
        ),
    })
}

/// C: concurrent clients over many names, try-acquire + release.
pub async fn many_names(
    client: &Client,
    clients: usize,
    names: u64,
    duration: Duration,
) -> Result<BenchResult, Error> {
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..clients as u64 {
        let (client, done) = (client.clone(), Arc::clone(&done));
        tasks.push(tokio::spawn(async move {
            let mut h = histogram();
            let mut i = worker;
            while started.elapsed() < duration {
                i = i
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let name = format!("bench:c:{}", (i >> 33) % names);
                let t = Instant::now();
                match client
                    .lock(&name)
                    .ttl(Duration::from_secs(30))
                    .try_acquire()
                    .await
                {
                    Ok(guard) => {
                        let _ = guard.release().await;
                        let _ = h.record(t.elapsed().as_micros().max(1) as u64);
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) if e.is_not_acquired() => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(h)
        }));
    }
    let mut h = histogram();
    let reporter = {
        let done = Arc::clone(&done);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                progress(
                    "C",
                    done.load(Ordering::Relaxed),
                    duration.saturating_sub(started.elapsed()),
                );
            }
        })
    };
    for task in tasks {
        if let Ok(Ok(part)) = task.await {
            let _ = h.add(part);
        }
    }
    reporter.abort();
    let (p50, p99, p999) = quantiles(&h);
    Ok(BenchResult {
        scenario: format!("C: {clients} clients over {names} names"),
        ops_per_sec: done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64(),
        p50_us: p50,
        p99_us: p99,
        p999_us: p999,
        ratio_to_floor: None,
        note: String::new(),
    })
}

/// The results as a table.
#[must_use]
pub fn table(results: &[BenchResult]) -> String {
    let mut out = format!(
        "{:<64} {:>10} {:>9} {:>9} {:>9} {:>8}\n",
        "scenario", "ops/s", "p50 µs", "p99 µs", "p99.9 µs", "÷floor"
    );
    for r in results {
        out.push_str(&format!(
            "{:<64} {:>10.0} {:>9} {:>9} {:>9} {:>8}\n",
            r.scenario,
            r.ops_per_sec,
            r.p50_us,
            r.p99_us,
            r.p999_us,
            r.ratio_to_floor.map_or("-".into(), |x| format!("{x:.2}")),
        ));
        if !r.note.is_empty() {
            out.push_str(&format!("    {}\n", r.note));
        }
    }
    out
}
