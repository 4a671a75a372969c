//! Property tests of the Redis Cluster routing pieces: the hash slot of a key, the slot map
//! read from `CLUSTER SHARDS` / `CLUSTER SLOTS` replies (well-formed, random and garbage),
//! redirect parsing, and which primaries a `reset --all` walk must read. The real-cluster
//! tests are `host/tests/cluster.rs`.

use distlock_core::{
    ASKING, CLUSTER_SHARDS, CLUSTER_SLOTS, ClusterLink, ClusterWalk, ClusterWalkError, Duration,
    Instant, KeyLayout, Keys, LockName, MAX_REDIRECTS, NextHop, NodeError, NodeReset, Primary,
    Protocol, Redirect, Redirects, ResetOutcome, SLOTS, SlotMap, SlotMapError, key_slot, lock_slot,
};
use proptest::prelude::*;

/// A `CLUSTER SLOTS` reply (RESP2) for `ranges` of `(first, last, port)`, all on host `h`.
fn slots_reply(ranges: &[(u16, u16, u16)]) -> Vec<u8> {
    let mut reply = format!("*{}\r\n", ranges.len());
    for (first, last, port) in ranges {
        reply += &format!("*3\r\n:{first}\r\n:{last}\r\n*2\r\n$1\r\nh\r\n:{port}\r\n");
    }
    reply.into_bytes()
}

/// Cuts `0..SLOTS` at `cuts` into consecutive ranges, each on a port from `ports`.
fn partition(mut cuts: Vec<u16>, ports: &[u16]) -> Vec<(u16, u16, u16)> {
    cuts.sort_unstable();
    cuts.dedup();
    let mut ranges = Vec::new();
    let mut first = 0u16;
    for (i, &cut) in cuts.iter().chain(std::iter::once(&SLOTS)).enumerate() {
        if cut > first {
            ranges.push((first, cut - 1, ports[i % ports.len()]));
            first = cut;
        }
    }
    ranges
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_key_has_a_slot_and_a_tag_decides_it(
        key in proptest::collection::vec(any::<u8>(), 0..64),
        tag in proptest::collection::vec(any::<u8>().prop_filter("no }", |b| *b != b'}'), 1..16),
        before in proptest::collection::vec(any::<u8>().prop_filter("no {", |b| *b != b'{'), 0..16),
        after in proptest::collection::vec(any::<u8>(), 0..16),
    ) {
        prop_assert!(key_slot(&key) < SLOTS);
        // `before{tag}after` lives where `tag` does, whatever follows.
        let tagged = [&before[..], b"{", &tag, b"}", &after].concat();
        prop_assert_eq!(key_slot(&tagged), key_slot(&tag));
    }

    #[test]
    fn tagged_and_redis_py_locks_share_one_slot(
        // Printable bytes drawn as such: a filter over any byte threw away 63% of them (some
        // 35 rejects a name), which ran out proptest's local-reject budget past ~1,900 cases.
        name in proptest::collection::vec(b'!'..=b'~', 1..40),
    ) {
        let Ok(name) = LockName::new(&name) else { return Ok(()) };
        let tagged = Keys::new(KeyLayout::default(), name.clone());
        prop_assert!(lock_slot(&tagged).is_ok());
        if !name.as_bytes().contains(&b'}') {
            // redis-py's key is the name itself, hashed whole unless it has a tag of its own.
            let redis_py = Keys::new(KeyLayout::redis_py(), name.clone());
            if !name.as_bytes().contains(&b'{') {
                prop_assert_eq!(lock_slot(&redis_py), Ok(key_slot(name.as_bytes())));
            }
        }
    }

    #[test]
    fn a_partition_of_the_slots_routes_every_slot_to_its_range(
        cuts in proptest::collection::vec(1u16..SLOTS, 0..40),
        ports in proptest::collection::vec(1u16..u16::MAX, 1..8),
        probe in 0u16..SLOTS,
    ) {
        let ranges = partition(cuts, &ports);
        let map = SlotMap::from_slots(&slots_reply(&ranges), Protocol::Resp2, "seed").unwrap();
        prop_assert_eq!(map.served(), usize::from(SLOTS));
        let (_, _, port) = ranges.iter().find(|(f, l, _)| (*f..=*l).contains(&probe)).unwrap();
        prop_assert_eq!(map.owner(probe).unwrap(), &Primary::new("h", *port).unwrap());
    }

    /// A walk reads every primary of a whole map, refuses one with a gap (those slots' keys
    /// would go unread), and gives names only when every primary answered to the end.
    #[test]
    fn a_cluster_walk_reads_every_primary_or_says_nothing(
        cuts in proptest::collection::vec(1u16..SLOTS, 0..40),
        ports in proptest::collection::vec(1u16..u16::MAX, 1..8),
        hole in any::<Option<prop::sample::Index>>(),
        garbage in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..24), 0..16),
        locks in proptest::collection::vec("[a-z]{1,4}", 0..6),
        failed in any::<Option<prop::sample::Index>>(),
    ) {
        let mut ranges = partition(cuts, &ports);
        if let Some(hole) = hole {
            ranges.remove(hole.index(ranges.len()));
        }
        let map = SlotMap::from_slots(&slots_reply(&ranges), Protocol::Resp2, "seed").unwrap();
        let walk = match ClusterWalk::plan(&map) {
            Ok(walk) => walk,
            Err(ClusterWalkError::Unserved { slots }) => {
                prop_assert!(hole.is_some());
                prop_assert_eq!(slots, usize::from(SLOTS) - map.served());
                return Ok(());
            }
            Err(other) => return Err(TestCaseError::fail(format!("{other:?}"))),
        };
        prop_assert_eq!(map.served(), usize::from(SLOTS));
        prop_assert_eq!(walk.primaries(), map.primaries());
        let mut keys = garbage;
        keys.extend(locks.iter().map(|name| format!("distlock:{{{name}}}").into_bytes()));
        let found = NodeReset { deleted: keys.clone(), ..NodeReset::default() };
        let mut nodes: Vec<Result<NodeReset, NodeError>> =
            walk.primaries().iter().map(|_| Ok(found.clone())).collect();
        let failed = failed.map(|i| i.index(nodes.len()));
        if let Some(i) = failed {
            nodes[i] = Err(NodeError::Disconnected);
        }
        let layout = KeyLayout::default();
        match walk.names(&layout, &ResetOutcome { nodes }) {
            Ok(names) => {
                prop_assert!(failed.is_none());
                for name in &names {
                    let lock_key = Keys::new(layout.clone(), name.clone()).lock().concat();
                    let holds = Keys::new(layout.clone(), name.clone()).holds().concat();
                    prop_assert!(keys.iter().any(|k| *k == lock_key || *k == holds));
                }
                prop_assert!(names.windows(2).all(|w| w[0].as_bytes() < w[1].as_bytes()));
                for lock in &locks {
                    prop_assert!(names.iter().any(|n| n.as_bytes() == lock.as_bytes()), "{}", lock);
                }
            }
            Err(ClusterWalkError::Unread { primary, .. }) => {
                prop_assert_eq!(Some(&*primary), failed.map(|i| &walk.primaries()[i]));
            }
            Err(other) => return Err(TestCaseError::fail(format!("{other:?}"))),
        }
    }

    #[test]
    fn garbage_never_panics_the_map_readers(
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
        tls in any::<bool>(),
    ) {
        for protocol in [Protocol::Resp2, Protocol::Resp3] {
            let _ = SlotMap::from_shards(&bytes, protocol, "seed", tls);
            let _ = SlotMap::from_slots(&bytes, protocol, "seed");
        }
        let _ = Redirect::parse(&bytes, "seed");
    }

    #[test]
    fn cut_and_corrupted_replies_are_typed_errors_never_a_half_map(
        cuts in proptest::collection::vec(1u16..SLOTS, 0..8),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let reply = slots_reply(&partition(cuts, &[7000, 7001, 7002]));
        // Every proper prefix is incomplete or malformed: never a map of part of the slots.
        let cut = at.index(reply.len());
        let prefix = SlotMap::from_slots(&reply[..cut], Protocol::Resp2, "seed");
        prop_assert!(prefix.is_err(), "{:?}", prefix);
        // One byte changed: a whole map, or an error.
        let mut corrupted = reply.clone();
        corrupted[at.index(reply.len())] = byte;
        if let Ok(map) = SlotMap::from_slots(&corrupted, Protocol::Resp2, "seed") {
            prop_assert!(map.served() <= usize::from(SLOTS));
        }
    }

    #[test]
    fn redirects_end_within_the_budget_and_the_deadline(
        kinds in proptest::collection::vec(0u8..3, 1..20),
        step in 0u64..400,
    ) {
        let mut map = SlotMap::from_slots(&slots_reply(&[(0, SLOTS - 1, 7000)]), Protocol::Resp2, "h").unwrap();
        let start = Instant::from_millis(10);
        let timeout = Duration::from_millis(1000);
        let mut budget = Redirects::new(start, timeout);
        let mut now = start;
        let mut followed = 0;
        for kind in kinds {
            let redirect = match kind {
                0 => Redirect::parse(b"MOVED 5 h:7001", "h").unwrap(),
                1 => Redirect::parse(b"ASK 5 h:7002", "h").unwrap(),
                _ => Redirect::TryAgain,
            };
            match budget.follow(redirect, &mut map, now) {
                NextHop::GiveUp(_) => break,
                NextHop::ResendAt(at) => {
                    prop_assert!(at < start.saturating_add(timeout));
                    now = at;
                }
                _ => {}
            }
            followed += 1;
            prop_assert!(followed <= MAX_REDIRECTS);
            now = now.saturating_add(Duration::from_millis(step));
        }
    }
}

/// `GET k<i>`, and the `i` back out of such a command.
fn get(i: usize) -> Vec<u8> {
    let key = format!("k{i}");
    format!("*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len()).into_bytes()
}

fn key_of(command: &[u8]) -> usize {
    let text = std::str::from_utf8(command).unwrap();
    let key = text.trim_end().rsplit('\n').next().unwrap();
    key.trim_start_matches('k').trim().parse().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A cluster that answers each command with its value or a random redirect: every
    /// command written gets exactly one reply, in write order — its own value, or an error
    /// once the redirects run out — and the link ends idle.
    #[test]
    fn every_command_gets_one_reply_in_order_whatever_the_cluster_redirects(
        commands in 1usize..12,
        answers in proptest::collection::vec(0u8..5, 0..80),
        split in 1usize..40,
    ) {
        let map = SlotMap::from_slots(&slots_reply(&[(0, SLOTS - 1, 1)]), Protocol::Resp2, "h").unwrap();
        let seed = Primary::new("h", 1).unwrap();
        let mut link = ClusterLink::new(map, seed, Protocol::Resp2, Duration::from_millis(1000), false);
        let mut now = Instant::from_millis(0);
        let written: Vec<u8> = (0..commands).flat_map(get).collect();
        for chunk in written.chunks(split) {
            link.write(chunk, now).unwrap();
        }
        let mut answers = answers.into_iter();
        let mut replies = Vec::new();
        for _ in 0..1000 {
            while let Some((to, bytes)) = link.poll_transmit() {
                // After a MOVED the link reads the map again: this cluster is older than 7.0.
                if bytes == CLUSTER_SHARDS {
                    link.handle_input(&to, b"-ERR unknown subcommand 'SHARDS'\r\n", now).unwrap();
                    continue;
                }
                if bytes == CLUSTER_SLOTS {
                    link.handle_input(&to, &slots_reply(&[(0, SLOTS - 1, 1)]), now).unwrap();
                    continue;
                }
                let (asking, command) = match bytes.strip_prefix(ASKING) {
                    Some(rest) => (true, rest),
                    None => (false, &bytes[..]),
                };
                let i = key_of(command);
                let slot = key_slot(format!("k{i}").as_bytes());
                let other = if to.port() == 1 { 2 } else { 1 };
                let answer = match answers.next().unwrap_or(0) {
                    1 => format!("-MOVED {slot} h:{other}\r\n"),
                    2 => format!("-ASK {slot} h:{other}\r\n"),
                    3 => "-TRYAGAIN Multiple keys request during rehashing of slot\r\n".into(),
                    _ => format!(":{i}\r\n"),
                };
                let answer = if asking { format!("+OK\r\n{answer}") } else { answer };
                link.handle_input(&to, answer.as_bytes(), now).unwrap();
            }
            let mut buf = [0u8; 64];
            loop {
                let n = link.read(&mut buf);
                if n == 0 { break; }
                replies.extend_from_slice(&buf[..n]);
            }
            match link.poll_timeout() {
                Some(at) => { now = at; link.handle_timeout(now); }
                None => break,
            }
        }
        prop_assert!(link.is_idle());
        let text = String::from_utf8(replies).unwrap();
        let lines: Vec<&str> = text.split_terminator("\r\n").collect();
        prop_assert_eq!(lines.len(), commands, "{}", text);
        for (i, line) in lines.iter().enumerate() {
            prop_assert!(
                *line == format!(":{i}") || line.starts_with("-CLUSTERDOWN"),
                "reply {} is {}", i, line
            );
        }
    }
}

#[test]
fn a_refusal_is_told_apart_from_a_broken_reply() {
    let refused = SlotMap::from_shards(
        b"-ERR unknown subcommand 'shards'. Try CLUSTER HELP.\r\n",
        Protocol::Resp2,
        "h",
        false,
    );
    assert!(
        matches!(refused, Err(SlotMapError::Refused(_))),
        "{refused:?}"
    );
    let broken = SlotMap::from_shards(b"+OK\r\n", Protocol::Resp2, "h", false);
    assert_eq!(broken, Err(SlotMapError::Malformed));
}
