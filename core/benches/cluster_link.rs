//! Micro-benchmark of what a Redis Cluster node adds to each command on the driver's side:
//! the CPU cost of one acquire + release pair (scenario A's commands) through a
//! [`ClusterLink`], with no network and no clock.
//!
//! Inside the timed loop, per iteration: write the acquire's `SET NX PX` to the link, take
//! its transmit, feed the primary's `+OK`, read the reply back; the same for the release's
//! `EVALSHA` and its `:1`. That is the link's whole share of a pair: routing (the command's
//! arguments, the key's slot, the map's owner), the order kept, the redirect check of each
//! reply. Outside it: the link (a one-primary map) and the encoded commands, made once. The
//! pair is run once before timing and its bytes checked, so the bench cannot measure a
//! failure path.
//!
//! Bench id: `cluster-link/acquire-release-pair`.
//!
//! Run: `cargo bench -p distlock-core --bench cluster_link -- --measurement-time 5`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use distlock_core::{ClusterLink, Duration, Instant, Primary, Protocol, SlotMap};

const NOW: Instant = Instant::from_millis(1_000);

/// A command as the lock machines encode it: a RESP array of bulk strings.
fn command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// One command through the link: written, sent, answered with `reply`, read back.
fn round_trip(link: &mut ClusterLink, command: &[u8], reply: &[u8], buf: &mut [u8]) -> usize {
    link.write(command, NOW).unwrap();
    let (primary, bytes) = link.poll_transmit().unwrap();
    black_box(&bytes);
    link.handle_input(&primary, reply, NOW).unwrap();
    link.read(buf)
}

fn cluster_link(c: &mut Criterion) {
    let map = SlotMap::from_slots(
        b"*1\r\n*3\r\n:0\r\n:16383\r\n*2\r\n$9\r\n127.0.0.1\r\n:7000\r\n",
        Protocol::Resp2,
        "127.0.0.1",
    )
    .unwrap();
    let seed = Primary::new("127.0.0.1", 7001).unwrap();
    let mut link = ClusterLink::new(
        map,
        seed,
        Protocol::Resp2,
        Duration::from_millis(1_000),
        false,
    );
    let token: &[u8] = b"3q2+7w0vY8a1Xk9LmN4pQr";
    let acquire = command(&[b"SET", b"distlock:{bench:a}", token, b"NX", b"PX", b"30000"]);
    let release = command(&[
        b"EVALSHA",
        b"0123456789abcdef0123456789abcdef01234567",
        b"1",
        b"distlock:{bench:a}",
        token,
    ]);
    let mut buf = [0u8; 64];
    let n = round_trip(&mut link, &acquire, b"+OK\r\n", &mut buf);
    assert_eq!(&buf[..n], b"+OK\r\n");
    let n = round_trip(&mut link, &release, b":1\r\n", &mut buf);
    assert_eq!(&buf[..n], b":1\r\n");
    assert!(link.is_idle());
    c.bench_function("cluster-link/acquire-release-pair", |b| {
        b.iter(|| {
            let a = round_trip(&mut link, &acquire, b"+OK\r\n", &mut buf);
            let r = round_trip(&mut link, &release, b":1\r\n", &mut buf);
            black_box((a, r))
        });
    });
}

criterion_group!(benches, cluster_link);
criterion_main!(benches);
