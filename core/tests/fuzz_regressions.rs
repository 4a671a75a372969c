//! Regression tests for what the fuzz targets (`fuzz/`) found, one per finding, minimised.
//!
//! A test is `#[ignore]`d while its finding is open; the fix un-ignores it (and sets the
//! matching `TOLERATE_…` switch in `fuzz/src/` to `false`, so the fuzzers stop working
//! around it).

mod common;

use common::{drain, lock_with, ms, servers, token};
use distlock_core::{
    Acquire, Duration, Flavor, Handshake, HandshakeOptions, Instant, LockOptions, Machine,
    Operation, Release, SCRIPTS, ServerInfo, Version,
};

/// The driver loop of `core/src/machine.rs` with every node silent from now on: the outcome
/// must come, each time at a deadline the machine gives.
fn run_silent<Op: Operation, const N: usize>(
    m: &mut Machine<Op, N>,
    mut now: Instant,
) -> Op::Outcome {
    for _ in 0..1000 {
        drain(m, now);
        if let Some(outcome) = m.poll_outcome() {
            return outcome;
        }
        let deadline = m
            .poll_timeout()
            .expect("no outcome and no deadline: the machine waits for a reply nothing owes it");
        now = now.max(deadline);
        m.handle_timeout(now);
    }
    panic!("no outcome after 1000 deadlines");
}

const NOSCRIPT: &[u8] = b"-NOSCRIPT No matching script. Please use EVAL.\r\n";

// ---- Finding 2: a resend request followed by more bytes in the same read stalls the machine.
//
// `NOSCRIPT` (for a script) or `ERR unknown command` (for a native command) completes the
// request in flight and queues its resend on the link; if the same read holds more bytes (a
// reply that answers nothing, or bytes that are not RESP), the link desynchronises, which
// clears the queued resend — while nothing is in flight, so the operation is never told.
// Its vote stays pending: no outcome, no deadline, and `handle_disconnect` does not help
// either (nothing in flight to fail). For a batch (SET NX + PTTL, a native release with its
// signal commands) it is the read that completes the batch that must not hold more. Found
// by `event_sequence` (NOSCRIPT held back, then delivered together with the next reply;
// and `unknown command`, then the batch's last reply and one more in a later read).

#[test]
fn bytes_after_noscript_in_the_same_read_do_not_stall_the_machine() {
    let lock = lock_with(LockOptions {
        fenced: true,
        ..LockOptions::default()
    });
    let mut m: Acquire<1> =
        Acquire::new(&lock, token(1), &servers(1), Duration::ZERO, ms(0), 1).unwrap();
    drain(&mut m, ms(0));
    // A stray reply right behind the NOSCRIPT.
    m.handle_input(0, &[NOSCRIPT, b"+OK\r\n"].concat(), ms(1));
    let outcome = run_silent(&mut m, ms(1));
    assert!(outcome.is_err(), "{outcome:?}");
}

#[test]
fn junk_after_noscript_does_not_block_a_redlock_attempt() {
    let lock = lock_with(LockOptions {
        fenced: true,
        ..LockOptions::default()
    });
    let mut m: Acquire<3> =
        Acquire::new(&lock, token(1), &servers(3), Duration::ZERO, ms(0), 1).unwrap();
    drain(&mut m, ms(0));
    m.handle_input(0, b"*2\r\n:1\r\n:5\r\n", ms(1));
    // Bytes that are not RESP right behind the NOSCRIPT.
    m.handle_input(1, &[NOSCRIPT, b"\x00"].concat(), ms(1));
    drain(&mut m, ms(1));
    m.handle_input(2, b"*2\r\n:0\r\n:100\r\n", ms(1));
    // One grant, one busy, one node that will never answer: the attempt must still end.
    let outcome = run_silent(&mut m, ms(1));
    assert!(outcome.is_err(), "{outcome:?}");
}

#[test]
fn bytes_after_unknown_command_in_the_same_read_do_not_stall_a_release() {
    let lock = lock_with(LockOptions {
        wake_signal: None,
        ..LockOptions::default()
    });
    // Claims DELEX (Redis 8.4) but is older: the release falls back to the script.
    let server = [ServerInfo {
        flavor: Flavor::Redis,
        version: Version::new(8, 4, 0),
        ..ServerInfo::default()
    }];
    let mut m: Release<1> = Release::new(&lock, token(1), &server, ms(0), 1).unwrap();
    drain(&mut m, ms(0));
    m.handle_input(
        0,
        b"-ERR unknown command 'DELEX', with args beginning with: \r\n:1\r\n",
        ms(1),
    );
    // A driver that reconnects on `owed_replies() == None` must not be stuck either.
    drain(&mut m, ms(1));
    m.handle_disconnect(0, ms(1));
    let outcome = run_silent(&mut m, ms(1));
    assert!(outcome.is_err(), "{outcome:?}");
}

#[test]
fn bytes_after_the_end_of_a_resend_batch_do_not_stall_a_release() {
    // With the wake-up signal, a native release is a batch of four commands (DELEX, LPUSH,
    // LTRIM, PEXPIRE): the resend waits for the fourth reply, and it is the read holding
    // that one that must not hold more.
    let lock = lock_with(LockOptions::default());
    let server = [ServerInfo {
        flavor: Flavor::Redis,
        version: Version::new(8, 4, 0),
        ..ServerInfo::default()
    }];
    let mut m: Release<1> = Release::new(&lock, token(1), &server, ms(0), 1).unwrap();
    drain(&mut m, ms(0));
    m.handle_input(
        0,
        b"-ERR unknown command 'DELEX', with args beginning with: \r\n:1\r\n+OK\r\n",
        ms(1),
    );
    drain(&mut m, ms(1));
    m.handle_input(0, b":1\r\n+OK\r\n", ms(2));
    let outcome = run_silent(&mut m, ms(2));
    assert!(outcome.is_err(), "{outcome:?}");
}

// ---- Finding 1: bytes that arrive after the handshake ended give it a second outcome.
//
// `Handshake::handle_input` keeps framing input after the outcome was taken: a frame makes
// `on_frame` fail with `Unsolicited` (step `Done`) and `finish` sets a new outcome, so
// `poll_outcome` — "the result, once" — yields `Ok(info)` and then `Err(Protocol(..))`.
// Found by `reply_bytes` (handshake kind, two replies delivered after the last one needed).

#[test]
fn handshake_outcome_comes_once_even_if_bytes_follow() {
    let hello = b"%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$6\r\n7.0.15\r\n$5\r\nproto\r\n:3\r\n$2\r\nid\r\n:6\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n";
    // With the loads, as the fuzzer found it (they are off by default).
    let options = HandshakeOptions {
        load_scripts: true,
        ..HandshakeOptions::default()
    };
    let mut hs = Handshake::new(options, Instant::ZERO);
    let mut buf = vec![0u8; 16 * 1024];
    hs.poll_transmit(&mut buf).unwrap().expect("HELLO");
    hs.handle_input(hello, ms(1));
    // Answer whatever else the handshake sends (the `SCRIPT LOAD`s, where it loads them),
    // all of it sent first as the driver contract says.
    let mut loads = 0;
    while hs.poll_transmit(&mut buf).unwrap().is_some() {
        loads += 1;
    }
    for _ in 0..loads {
        hs.handle_input(
            b"$40\r\n0123456789012345678901234567890123456789\r\n",
            ms(2),
        );
    }
    assert_eq!(loads, SCRIPTS.len());
    assert!(matches!(hs.poll_outcome(), Some(Ok(_))));
    // Anything more on the connection (here a stray reply) is not the handshake's business.
    hs.handle_input(b"+OK\r\n", ms(3));
    assert_eq!(hs.poll_outcome(), None, "the outcome comes once");
}

// ---- Finding 3: a hold count of 2^32 - 1 or more reads as "no grant yet".
//
// `AcquireOp::granted_holds` uses `u32::MAX` as "no grant counted yet", and a grant's holds
// are saturated into a `u32`: a re-entry whose reply says 4294967295 holds or more becomes
// the sentinel, and `succeed` reports `holds() == 1` — a fresh acquisition. With
// per-attempt tokens (the working tree's change) the lease then also reports the attempt's
// token, which the node does not hold (a re-entered key keeps the owner's token), so a
// release with it would say "not held". Only a hostile or broken server sends such a count.
// Found by `command_encoding` and `event_sequence` (`Pair(huge, …)` replies).

#[test]
fn a_saturated_hold_count_is_a_re_entry_not_a_fresh_acquisition() {
    let lock = lock_with(LockOptions {
        reentrant: true,
        ..LockOptions::default()
    });
    let owner = token(1);
    let mut m: Acquire<1> =
        Acquire::new(&lock, owner.clone(), &servers(1), Duration::ZERO, ms(0), 1).unwrap();
    drain(&mut m, ms(0));
    m.handle_input(0, b"*2\r\n:4294967295\r\n:0\r\n", ms(1));
    drain(&mut m, ms(1));
    let lease = m.poll_outcome().expect("an outcome").expect("a lease");
    assert!(lease.holds() > 1, "a re-entry reported as fresh: {lease:?}");
    assert_eq!(
        lease.token(),
        &owner,
        "a re-entered key holds the owner's token"
    );
}

// ---- Finding 4: a reentrant Redlock lease can report a token its quorum does not hold.
//
// With per-attempt tokens (the working tree's change), a fresh grant stores the attempt's
// token and a re-entry keeps the owner's; `succeed` picks the lease's token from the
// smallest hold count among the grants counted. When a node that lost its key (a restart
// without persistence, an expiry) grants fresh and another re-enters, the lease reports the
// attempt's token, held by a minority only: a release or extend with it says "not held" on
// the others, whose holds then stay until their TTL. Found by `reply_bytes` (two nodes, one
// `*2 :1 :0`, one `*2 :5 :4`).

#[test]
fn a_reentrant_redlock_lease_reports_a_token_its_quorum_holds() {
    let lock = lock_with(LockOptions {
        reentrant: true,
        ..LockOptions::default()
    });
    let owner = token(1);
    let mut m: Acquire<3> =
        Acquire::new(&lock, owner.clone(), &servers(3), Duration::ZERO, ms(0), 1).unwrap();
    let sent = drain(&mut m, ms(0));
    // What a fresh grant stores: the acquire script's first argument.
    let fresh_token = sent[0].commands[0][6].clone();
    // Nodes 0 and 1 still hold the owner's key and re-enter; node 2 lost it and takes it
    // fresh. Node 2 answers first.
    let held = [
        owner.as_bytes().to_vec(),
        owner.as_bytes().to_vec(),
        fresh_token,
    ];
    for (node, reply) in [
        (2, &b"*2\r\n:1\r\n:0\r\n"[..]),
        (0, b"*2\r\n:2\r\n:0\r\n"),
        (1, b"*2\r\n:2\r\n:0\r\n"),
    ] {
        m.handle_input(node, reply, ms(1));
        drain(&mut m, ms(1));
    }
    if let Ok(lease) = run_silent(&mut m, ms(1)) {
        let holding = held
            .iter()
            .filter(|t| t.as_slice() == lease.token().as_bytes())
            .count();
        assert!(
            holding >= 2,
            "the lease's token {} is held by {holding} of 3 nodes",
            lease.token()
        );
    }
}

// ---- Finding 5: a non-reentrant lock takes a reply of several holds as a re-entry.
//
// The acquire script reports `holds > 1` only when a reentrant lock's owner takes it again.
// A non-reentrant lock read such a reply as a grant all the same, and a re-entry's lease
// carries the owner's token — which an earlier attempt of the same acquire may have rolled
// back with (deleted), so the lease named a token no node held. Only a broken or hostile
// server sends it. Found by `event_sequence` (a fenced one-node acquire, the node reset, a
// reply of 56 holds and fence 256).

#[test]
fn several_holds_are_not_a_grant_for_a_lock_that_is_not_reentrant() {
    let lock = lock_with(LockOptions {
        fenced: true,
        ..LockOptions::default()
    });
    let mut m: Acquire<1> =
        Acquire::new(&lock, token(1), &servers(1), Duration::ZERO, ms(0), 1).unwrap();
    drain(&mut m, ms(0));
    m.handle_input(0, b"*2\r\n:56\r\n:256\r\n", ms(1));
    let outcome = run_silent(&mut m, ms(1));
    assert!(
        outcome.is_err(),
        "a forged re-entry was taken as a grant: {outcome:?}"
    );
}
