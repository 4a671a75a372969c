//! Property tests of the Redis Sentinel pieces: sentinel and `ROLE` replies (well-formed,
//! random and garbage) never panic and are read as what they say; a discovery always ends,
//! within its rounds and its deadline, and reports a primary only after one was verified;
//! the failover watch trips on `READONLY` however the bytes are split; a sentinel's refused
//! login ends a discovery at its next step, typed; the `+switch-master` subscription never
//! panics on garbage, ignores other services, goes round the sentinels and never pauses past
//! its cap. The real-sentinel
//! tests are `host/tests/sentinel.rs`.

use distlock_core::{
    Asked, Credentials, Discovery, DiscoveryError, DiscoveryStep, FailoverWatch, Instant, Protocol,
    Role, SENTINEL_ROUNDS, SUBSCRIBE_RETRY_CAP, SentinelAnswer, SentinelReplyError, ServerError,
    ServerErrorKind, SubscribeStep, SwitchAction, SwitchSubscription, parse_auth_reply,
    parse_primary_address, parse_pushed, parse_role, sentinel_auth_command, sentinel_reply_len,
};
use proptest::prelude::*;

fn asked() -> impl Strategy<Value = Asked> {
    prop_oneof![
        Just(Asked::NoAnswer),
        Just(Asked::Refused),
        Just(Asked::UnknownService),
        Just(Asked::PrimaryUnreachable),
        Just(Asked::NotPrimary),
        Just(Asked::RoleRefused),
        Just(Asked::AuthRefused),
        Just(Asked::Verified),
    ]
}

proptest! {
    #[test]
    fn garbage_replies_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256), resp3: bool) {
        let protocol = if resp3 { Protocol::Resp3 } else { Protocol::Resp2 };
        let _ = parse_primary_address(&bytes, protocol);
        let _ = parse_role(&bytes, protocol);
        let _ = sentinel_reply_len(&bytes);
        let _ = parse_auth_reply(&bytes, protocol);
        let mut watch = FailoverWatch::new();
        watch.observe(&bytes);
        watch.observe(&bytes);
    }

    #[test]
    fn well_formed_addresses_are_read_back(host in "[a-z0-9.]{1,40}", port in 1u16..) {
        let reply = format!("*2\r\n${}\r\n{host}\r\n${}\r\n{port}\r\n", host.len(), port.to_string().len());
        match parse_primary_address(reply.as_bytes(), Protocol::Resp2) {
            Ok(SentinelAnswer::Primary(p)) => {
                prop_assert_eq!(p.host(), host.as_str());
                prop_assert_eq!(p.port(), port);
            }
            other => prop_assert!(false, "{:?}", other),
        }
        // Cut short, it is incomplete, never a primary.
        for cut in 0..reply.len() {
            prop_assert_eq!(
                parse_primary_address(&reply.as_bytes()[..cut], Protocol::Resp2),
                Err(SentinelReplyError::Incomplete)
            );
        }
    }

    #[test]
    fn only_master_is_a_primary(role in "[a-z]{1,10}") {
        let reply = format!("*1\r\n${}\r\n{role}\r\n", role.len());
        let read = parse_role(reply.as_bytes(), Protocol::Resp2).unwrap();
        prop_assert_eq!(read == Role::Primary, role == "master");
    }

    #[test]
    fn discovery_ends_within_its_rounds_and_deadline(
        sentinels in 0usize..6,
        preferred in 0usize..10,
        deadline in 0u64..2_000,
        answers in proptest::collection::vec((asked(), 0u64..300), 0..64),
    ) {
        let deadline = Instant::from_millis(deadline);
        let mut d = Discovery::new(sentinels, preferred, deadline);
        let mut now = Instant::from_millis(0);
        let mut answers = answers.into_iter().cycle();
        let mut asks = 0u32;
        let mut verified = false;
        loop {
            match d.next(now) {
                DiscoveryStep::Ask(i) => {
                    prop_assert!(i < sentinels);
                    prop_assert!(now < deadline);
                    asks += 1;
                    prop_assert!(asks <= SENTINEL_ROUNDS * sentinels as u32);
                    let (how, took) = answers.next().unwrap_or((Asked::NoAnswer, 1));
                    verified = how == Asked::Verified;
                    let refused = how == Asked::AuthRefused;
                    now = now.saturating_add(distlock_core::Duration::from_millis(took));
                    d.asked(i, how);
                    if refused {
                        prop_assert_eq!(
                            d.next(now),
                            DiscoveryStep::GiveUp(DiscoveryError::SentinelAuthRefused)
                        );
                        break;
                    }
                }
                DiscoveryStep::Pause(until) => {
                    prop_assert!(until > now && until < deadline);
                    now = until;
                }
                DiscoveryStep::Done => {
                    prop_assert!(verified, "done without a verified primary");
                    break;
                }
                _ => {
                    prop_assert!(!verified);
                    break;
                }
            }
        }
    }

    #[test]
    fn readonly_trips_the_watch_in_any_split(prefix in proptest::collection::vec(0usize..3, 0..5), split in 0usize..200) {
        let replies: [&[u8]; 3] = [b"+OK\r\n", b":7\r\n", b"$3\r\nabc\r\n"];
        let mut stream: Vec<u8> = prefix.iter().flat_map(|&i| replies[i].iter().copied()).collect();
        let clean = stream.clone();
        stream.extend_from_slice(b"-READONLY You can't write against a read only replica.\r\n");
        let at = split % (stream.len() + 1);
        let mut watch = FailoverWatch::new();
        watch.observe(&stream[..at]);
        watch.observe(&stream[at..]);
        prop_assert!(watch.tripped());
        let mut watch = FailoverWatch::new();
        watch.observe(&clean);
        prop_assert!(!watch.tripped());
    }
}

#[test]
fn the_sentinel_login_is_sent_as_auth_and_its_refusals_are_told_apart() {
    let password = Credentials {
        username: None,
        password: b"s3cret".to_vec(),
    };
    assert_eq!(
        sentinel_auth_command(&password),
        b"*2\r\n$4\r\nAUTH\r\n$6\r\ns3cret\r\n"
    );
    let user = Credentials {
        username: Some(b"watcher".to_vec()),
        ..password
    };
    assert_eq!(
        sentinel_auth_command(&user),
        b"*3\r\n$4\r\nAUTH\r\n$7\r\nwatcher\r\n$6\r\ns3cret\r\n"
    );
    assert_eq!(parse_auth_reply(b"+OK\r\n", Protocol::Resp2), Ok(()));
    assert_eq!(
        parse_auth_reply(b":1\r\n", Protocol::Resp2),
        Err(SentinelReplyError::Malformed)
    );
    let refused = parse_auth_reply(
        b"-WRONGPASS invalid username-password pair or user is disabled.\r\n",
        Protocol::Resp2,
    );
    let Err(SentinelReplyError::Refused(error)) = refused else {
        panic!("{refused:?}");
    };
    assert_eq!(error.kind, ServerErrorKind::NoAuth);
    assert_eq!(Asked::after_refusal(&error), Asked::AuthRefused);
    for (message, asked) in [
        (&b"NOAUTH Authentication required."[..], Asked::AuthRefused),
        (b"NOPERM no permissions", Asked::AuthRefused),
        (b"ERR unknown command 'SENTINEL'", Asked::Refused),
    ] {
        assert_eq!(
            Asked::after_refusal(&ServerError::from_message(message)),
            asked
        );
    }
}

fn switch_message(payload: &[u8]) -> Vec<u8> {
    let mut frame = format!(
        "*3\r\n$7\r\nmessage\r\n$14\r\n+switch-master\r\n${}\r\n",
        payload.len()
    )
    .into_bytes();
    frame.extend_from_slice(payload);
    frame.extend_from_slice(b"\r\n");
    frame
}

proptest! {
    #[test]
    fn garbage_on_the_subscription_never_panics(
        frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..128), 0..8),
        payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..8),
        resp3: bool,
    ) {
        let protocol = if resp3 { Protocol::Resp3 } else { Protocol::Resp2 };
        let mut sub = SwitchSubscription::new("mymaster", 3, 9);
        let mut now = Instant::from_millis(0);
        for (frame, payload) in frames.iter().zip(payloads.iter().chain(std::iter::repeat(&Vec::new()))) {
            let _ = parse_pushed(frame, protocol);
            let message = switch_message(payload);
            let _ = parse_pushed(&message, protocol);
            match sub.next(now) {
                SubscribeStep::Subscribe(i) | SubscribeStep::Listen(i) => {
                    prop_assert!(i < 3);
                    let _ = sub.frame(i, frame, protocol, now);
                    let _ = sub.frame(i, &message, protocol, now);
                }
                SubscribeStep::Pause(until) => {
                    prop_assert!(until > now);
                    prop_assert!(until <= now.saturating_add(SUBSCRIBE_RETRY_CAP));
                    now = until;
                }
                _ => {}
            }
        }
    }

    #[test]
    fn a_message_for_another_service_changes_nothing(
        service in "[a-z]{1,12}",
        old_port in 1u16..,
        new_port in 1u16..,
        losses in 0usize..4,
    ) {
        prop_assume!(service != "mymaster");
        let mut sub = SwitchSubscription::new("mymaster", 3, 5);
        let mut now = Instant::from_millis(0);
        for _ in 0..losses {
            match sub.next(now) {
                SubscribeStep::Subscribe(i) => sub.lost(i, now),
                SubscribeStep::Pause(until) => now = until,
                _ => {}
            }
        }
        let sentinel = loop {
            match sub.next(now) {
                SubscribeStep::Subscribe(i) | SubscribeStep::Listen(i) => break i,
                SubscribeStep::Pause(until) => now = until,
                _ => {}
            }
        };
        let payload = format!("{service} 10.0.0.1 {old_port} 10.0.0.2 {new_port}");
        let before = sub.clone();
        prop_assert_eq!(
            sub.frame(sentinel, &switch_message(payload.as_bytes()), Protocol::Resp2, now),
            SwitchAction::Nothing
        );
        prop_assert_eq!(&sub, &before);
        // The same message for this service is followed, and names both primaries.
        let ours = format!("mymaster 10.0.0.1 {old_port} 10.0.0.2 {new_port}");
        match sub.frame(sentinel, &switch_message(ours.as_bytes()), Protocol::Resp2, now) {
            SwitchAction::Follow { switch, announced_by } => {
                prop_assert_eq!(announced_by, sentinel);
                prop_assert_eq!((switch.old.host(), switch.old.port()), ("10.0.0.1", old_port));
                prop_assert_eq!((switch.new.host(), switch.new.port()), ("10.0.0.2", new_port));
            }
            other => prop_assert!(false, "{:?}", other),
        }
    }

    #[test]
    fn subscribe_attempts_go_round_the_sentinels_and_never_pause_past_the_cap(
        sentinels in 1usize..6,
        seed: u64,
        events in proptest::collection::vec(any::<bool>(), 1..40),
    ) {
        let mut sub = SwitchSubscription::new("s", sentinels, seed);
        let mut now = Instant::from_millis(0);
        let mut last = None;
        for confirm in events {
            let sentinel = loop {
                match sub.next(now) {
                    SubscribeStep::Subscribe(i) => break i,
                    SubscribeStep::Pause(until) => {
                        prop_assert!(until > now && until <= now.saturating_add(SUBSCRIBE_RETRY_CAP));
                        now = until;
                    }
                    other => prop_assert!(false, "{:?}", other),
                }
            };
            if let Some(previous) = last {
                prop_assert_eq!(sentinel, (previous + 1) % sentinels, "another sentinel each time");
            }
            last = Some(sentinel);
            if confirm {
                let ok = b"*3\r\n$9\r\nsubscribe\r\n$14\r\n+switch-master\r\n:1\r\n";
                prop_assert_eq!(sub.frame(sentinel, ok, Protocol::Resp2, now), SwitchAction::Nothing);
                prop_assert_eq!(sub.next(now), SubscribeStep::Listen(sentinel));
                sub.lost(sentinel, now);
                // After a working subscription, the next sentinel is tried at once.
                prop_assert!(matches!(sub.next(now), SubscribeStep::Subscribe(_)));
                sub.lost((sentinel + 1) % sentinels, now);
                last = Some((sentinel + 1) % sentinels);
            } else {
                sub.lost(sentinel, now);
            }
        }
    }
}
