//! Pipelined release, driven by hand: what is written, and how the reply the connection
//! then owes is read by the next machine on it (or by a `ReleaseReader`) and reported —
//! released, not ours, or unconfirmed; never "released" unread.

mod common;

use common::{Command, args, drain, lock_with, ms, plain, servers, token};
use distlock_core::{
    Acquire, ConfigError, Duration, Flavor, KeyLayout, Lock, LockOptions, NodeFailure, OwedRelease,
    PipelinedRelease, Protocol, ProtocolError, ReleaseCheck, ReleaseReader, Released, ServerInfo,
    Token, Version, script,
};
use redis_protocol::resp2::{decode::decode, types::OwnedFrame};

/// Encodes a pipelined release of `lock` by `token` for `server`, at `now`.
fn pipelined(
    lock: &Lock,
    token: &Token,
    server: ServerInfo,
    now: u64,
) -> (Vec<Command>, OwedRelease) {
    let release = PipelinedRelease::new(lock, token, &[server]).unwrap();
    let mut buf = [0u8; 4096];
    let (len, owed) = release.encode(ms(now), &mut buf).unwrap();
    (commands(&buf[..len]), owed)
}

fn commands(mut bytes: &[u8]) -> Vec<Command> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (frame, used) = decode(bytes).unwrap().expect("a whole command");
        let OwnedFrame::Array(items) = frame else {
            panic!("not an array: {frame:?}")
        };
        out.push(
            items
                .into_iter()
                .map(|item| match item {
                    OwnedFrame::BulkString(b) => b,
                    other => panic!("not a bulk string: {other:?}"),
                })
                .collect(),
        );
        bytes = &bytes[used..];
    }
    out
}

fn valkey9() -> ServerInfo {
    ServerInfo {
        protocol: Protocol::Resp2,
        flavor: Flavor::Valkey,
        version: Version::new(9, 0, 0),
    }
}

/// A next acquire on the connection, told of the owed release, its `SET` drained.
fn next_acquire(owed: OwedRelease) -> Acquire<1> {
    let lock = lock_with(LockOptions::default());
    let mut acquire: Acquire<1> =
        Acquire::new(&lock, token(2), &plain(), Duration::ZERO, ms(1), 0).unwrap();
    assert!(acquire.owe_release(0, owed));
    let sent = drain(&mut acquire, ms(1));
    assert_eq!(sent.len(), 1);
    acquire
}

#[test]
fn a_pipelined_release_is_the_release_script_by_source() {
    let lock = lock_with(LockOptions::default());
    let t = token(1);
    let (sent, owed) = pipelined(&lock, &t, ServerInfo::default(), 0);
    // By source: nobody waits to resend it after a NOSCRIPT.
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0][0], b"EVAL");
    assert_eq!(sent[0][1], script::RELEASE.source.as_bytes());
    assert!(sent[0].contains(&t.as_str().as_bytes().to_vec()));
    assert_eq!(owed.remaining(), 1);
    let timeout = LockOptions::default().request_timeout;
    assert_eq!(owed.deadline(), ms(0).saturating_add(timeout));
}

#[test]
fn on_a_server_with_a_native_delete_it_is_the_native_command() {
    let quiet = lock_with(LockOptions {
        wake_signal: None,
        ..Default::default()
    });
    let t = token(1);
    let (sent, owed) = pipelined(&quiet, &t, valkey9(), 0);
    assert_eq!(sent, vec![args(&["DELIFEQ", "distlock:{job}", t.as_str()])]);
    assert_eq!(owed.remaining(), 1);
    // With wake-up signals (the default) the signal's three commands ride along: four
    // replies owed, the first the answer.
    let (sent, owed) = pipelined(&lock_with(LockOptions::default()), &t, valkey9(), 0);
    assert_eq!(sent.len(), 4);
    assert_eq!(sent[1][0], b"LPUSH");
    assert_eq!(owed.remaining(), 4);
    let mut reader = ReleaseReader::new(owed.clone(), Protocol::Resp2);
    reader.handle_input(b":1\r\n:1\r\n+OK\r\n");
    assert_eq!(reader.poll_check(), None, "one reply still owed");
    reader.handle_input(b":1\r\n");
    assert_eq!(
        reader.poll_check(),
        Some(ReleaseCheck::Released(Released::Free))
    );
    let (_, again) = pipelined(&lock_with(LockOptions::default()), &t, valkey9(), 0);
    let mut not_ours = ReleaseReader::new(again, Protocol::Resp2);
    not_ours.handle_input(b":0\r\n:1\r\n+OK\r\n:1\r\n");
    assert_eq!(not_ours.poll_check(), Some(ReleaseCheck::NotHeld));
    assert!(not_ours.in_step());
}

#[test]
fn redlock_semaphores_and_multi_name_locks_are_refused() {
    let lock = lock_with(LockOptions::default());
    let t = token(1);
    assert_eq!(
        PipelinedRelease::new(&lock, &t, &servers(3)).err(),
        Some(ConfigError::PipelinedUnsupported)
    );
    assert_eq!(
        PipelinedRelease::new(&lock, &t, &[]).err(),
        Some(ConfigError::PipelinedUnsupported)
    );
    let semaphore =
        Lock::semaphore(KeyLayout::default(), b"job", 3, LockOptions::default()).unwrap();
    assert_eq!(
        PipelinedRelease::new(&semaphore, &t, &plain()).err(),
        Some(ConfigError::PipelinedUnsupported)
    );
    let multi = Lock::multi(KeyLayout::default(), &[b"a", b"b"], LockOptions::default()).unwrap();
    assert_eq!(
        PipelinedRelease::new(&multi, &t, &plain()).err(),
        Some(ConfigError::PipelinedUnsupported)
    );
}

#[test]
fn a_short_buffer_is_left_untouched() {
    let lock = lock_with(LockOptions::default());
    let t = token(1);
    let release = PipelinedRelease::new(&lock, &t, &plain()).unwrap();
    let mut buf = [7u8; 16];
    let short = release.encode(ms(0), &mut buf).unwrap_err();
    assert!(short.required > 16);
    assert_eq!(buf, [7u8; 16]);
}

/// The release's reply comes first on the connection, coalesced with the next command's:
/// the release takes the first frame, the acquire the second.
#[test]
fn the_owed_reply_is_read_before_the_next_commands_replies() {
    let lock = lock_with(LockOptions::default());
    let (_, owed) = pipelined(&lock, &token(1), ServerInfo::default(), 0);
    let mut acquire = next_acquire(owed);
    assert_eq!(
        acquire.owed_replies(0),
        Some(2),
        "the release's and the SET's"
    );
    acquire.handle_input(0, b":0\r\n+OK\r\n", ms(2));
    assert_eq!(
        acquire.take_release_check(0),
        Some(ReleaseCheck::Released(Released::Free))
    );
    assert_eq!(acquire.take_release_check(0), None, "once");
    assert!(acquire.poll_outcome().unwrap().is_ok());
    assert_eq!(acquire.owed_replies(0), Some(0));
}

/// A release's "nil" would read as "busy" to the acquire if it were matched to it: the
/// replies split one byte at a time still go to the right owner.
#[test]
fn split_replies_go_to_their_owners() {
    let lock = lock_with(LockOptions::default());
    let (_, owed) = pipelined(&lock, &token(1), ServerInfo::default(), 0);
    let mut acquire = next_acquire(owed);
    for byte in b":-1\r\n$-1\r\n" {
        acquire.handle_input(0, &[*byte], ms(2));
    }
    assert_eq!(acquire.take_release_check(0), Some(ReleaseCheck::NotHeld));
    assert!(
        acquire.poll_outcome().unwrap().is_err(),
        "the SET was refused"
    );
}

#[test]
fn a_reply_saying_the_lock_was_no_longer_ours_is_reported() {
    let lock = lock_with(LockOptions::default());
    let (_, owed) = pipelined(&lock, &token(1), ServerInfo::default(), 0);
    let mut acquire = next_acquire(owed);
    acquire.handle_input(0, b":-1\r\n", ms(2));
    assert_eq!(acquire.take_release_check(0), Some(ReleaseCheck::NotHeld));
    assert_eq!(
        acquire.poll_outcome(),
        None,
        "the acquire's own reply is still to come"
    );
    acquire.handle_input(0, b"+OK\r\n", ms(2));
    assert!(acquire.poll_outcome().unwrap().is_ok());
}

#[test]
fn a_lost_connection_with_the_reply_owed_is_unconfirmed_not_released() {
    let lock = lock_with(LockOptions::default());
    let (_, owed) = pipelined(&lock, &token(1), ServerInfo::default(), 0);
    let mut acquire = next_acquire(owed);
    assert_eq!(acquire.take_release_check(0), None, "nothing read yet");
    acquire.handle_disconnect(0, ms(2));
    assert_eq!(
        acquire.take_release_check(0),
        Some(ReleaseCheck::Unconfirmed(NodeFailure::Disconnected))
    );
    assert_eq!(
        acquire.owed_replies(0),
        Some(0),
        "nothing owed on a new connection"
    );
}

#[test]
fn a_reply_past_its_deadline_is_unconfirmed_and_read_past() {
    let lock = lock_with(LockOptions::default());
    let (_, owed) = pipelined(&lock, &token(1), ServerInfo::default(), 0);
    let deadline = owed.deadline();
    let mut acquire = next_acquire(owed);
    assert!(acquire.poll_timeout().is_some_and(|t| t <= deadline));
    acquire.handle_timeout(deadline);
    assert_eq!(
        acquire.take_release_check(0),
        Some(ReleaseCheck::Unconfirmed(NodeFailure::Timeout))
    );
    // A late ":1" must not be taken as the acquire's reply, nor change the report.
    acquire.handle_input(0, b":1\r\n", deadline);
    assert_eq!(acquire.take_release_check(0), None);
}

#[test]
fn a_server_error_or_a_broken_reply_is_unconfirmed() {
    let lock = lock_with(LockOptions::default());
    let (_, owed) = pipelined(&lock, &token(1), ServerInfo::default(), 0);
    let mut acquire = next_acquire(owed.clone());
    acquire.handle_input(0, b"-ERR busy\r\n+OK\r\n", ms(2));
    assert!(matches!(
        acquire.take_release_check(0),
        Some(ReleaseCheck::Unconfirmed(NodeFailure::Server(_)))
    ));
    assert!(acquire.poll_outcome().unwrap().is_ok());

    let mut broken = next_acquire(owed);
    broken.handle_input(0, b"!!\r\n", ms(2));
    assert!(matches!(
        broken.take_release_check(0),
        Some(ReleaseCheck::Unconfirmed(NodeFailure::Protocol(_)))
    ));
    assert_eq!(broken.owed_replies(0), None, "out of step: reconnect");
}

#[test]
fn a_connection_owes_one_release_at_a_time() {
    let lock = lock_with(LockOptions::default());
    let (_, owed) = pipelined(&lock, &token(1), ServerInfo::default(), 0);
    let mut acquire = next_acquire(owed.clone());
    assert!(!acquire.owe_release(0, owed.clone()));
    assert!(!acquire.owe_release(1, owed), "no such node");
    assert_eq!(acquire.owed_replies(0), Some(2));
}

#[test]
fn a_reader_checks_the_reply_on_an_idle_connection() {
    let lock = lock_with(LockOptions::default());
    let (_, owed) = pipelined(&lock, &token(1), ServerInfo::default(), 0);
    let mut reader = ReleaseReader::new(owed.clone(), Protocol::Resp2);
    assert_eq!(reader.poll_timeout(), Some(owed.deadline()));
    reader.handle_input(b":");
    assert_eq!(reader.poll_check(), None);
    assert!(!reader.in_step());
    reader.handle_input(b"0\r\n");
    assert_eq!(
        reader.poll_check(),
        Some(ReleaseCheck::Released(Released::Free))
    );
    assert!(reader.in_step());
    assert_eq!(reader.poll_timeout(), None);

    // Stray bytes after the reply: the connection is out of step, the check stands.
    let mut stray = ReleaseReader::new(owed.clone(), Protocol::Resp2);
    stray.handle_input(b":-1\r\n+OK\r\n");
    assert_eq!(stray.poll_check(), Some(ReleaseCheck::NotHeld));
    assert!(!stray.in_step());

    let mut late = ReleaseReader::new(owed.clone(), Protocol::Resp2);
    late.handle_timeout(owed.deadline());
    assert_eq!(
        late.poll_check(),
        Some(ReleaseCheck::Unconfirmed(NodeFailure::Timeout))
    );
    assert!(!late.in_step());

    let mut lost = ReleaseReader::new(owed.clone(), Protocol::Resp2);
    lost.handle_disconnect();
    assert_eq!(
        lost.poll_check(),
        Some(ReleaseCheck::Unconfirmed(NodeFailure::Disconnected))
    );

    let mut broken = ReleaseReader::new(owed, Protocol::Resp2);
    broken.handle_input(b"!!\r\n");
    assert_eq!(
        broken.poll_check(),
        Some(ReleaseCheck::Unconfirmed(NodeFailure::Protocol(
            ProtocolError::Malformed
        )))
    );
}

/// A reader on an idle connection gives what is still owed back to a machine that takes
/// the connection over, only between replies: with half a reply read it keeps it (the
/// machine would misread the rest); with the first of four replies read, the machine reads
/// the other three and then its own, and reports the check.
#[test]
fn a_reader_hands_the_owed_release_to_a_machine_only_between_replies() {
    let (_, owed) = pipelined(&lock_with(LockOptions::default()), &token(1), valkey9(), 0);
    assert_eq!(owed.remaining(), 4, "the answer and the signal's three");
    let mut reader = ReleaseReader::new(owed.clone(), Protocol::Resp2);
    assert_eq!(reader.take_owed(), Some(owed.clone()), "nothing read yet");
    assert_eq!(reader.poll_check(), None);

    let mut reader = ReleaseReader::new(owed, Protocol::Resp2);
    reader.handle_input(b":1\r\n:");
    assert_eq!(reader.take_owed(), None, "half a reply read");
    reader.handle_input(b"1\r\n");
    let rest = reader.take_owed().expect("between replies");
    assert_eq!(rest.remaining(), 2);
    assert_eq!(reader.poll_check(), None, "the machine reports it now");
    let mut acquire = next_acquire(rest);
    assert_eq!(
        acquire.owed_replies(0),
        Some(3),
        "two of the release's, the SET's"
    );
    acquire.handle_input(0, b"+OK\r\n:1\r\n+OK\r\n", ms(2));
    assert_eq!(
        acquire.take_release_check(0),
        Some(ReleaseCheck::Released(Released::Free))
    );
    assert!(acquire.poll_outcome().unwrap().is_ok());

    let mut decided = ReleaseReader::new(
        pipelined(&lock_with(LockOptions::default()), &token(1), valkey9(), 0).1,
        Protocol::Resp2,
    );
    decided.handle_disconnect();
    assert_eq!(decided.take_owed(), None, "given up: nothing to hand over");
}

#[test]
fn a_reentrant_release_reports_the_holds_left() {
    let lock = lock_with(LockOptions {
        reentrant: true,
        ..Default::default()
    });
    let (_, owed) = pipelined(&lock, &token(1), ServerInfo::default(), 0);
    let mut reader = ReleaseReader::new(owed, Protocol::Resp2);
    reader.handle_input(b":2\r\n");
    assert_eq!(
        reader.poll_check(),
        Some(ReleaseCheck::Released(Released::StillHeld { holds: 2 }))
    );
}
