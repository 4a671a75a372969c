//! Property tests of replica-durable leases ([`Durability`]): the wait sent is never `0`
//! (block for ever) nor longer than the validity left; a reply confirms a lease only when
//! it counts enough replicas before the validity ran out; garbage never panics. The
//! real-replica tests are `host/tests/sentinel.rs`.

use distlock_core::{Durability, DurableError, Duration, Instant, Protocol};
use proptest::prelude::*;

proptest! {
    #[test]
    fn the_wait_is_bounded_by_the_timeout_and_the_validity(
        replicas in 1u32..8, timeout in 1u64..10_000, valid_until in 0u64..20_000, now in 0u64..20_000, aof: bool,
    ) {
        let mut d = Durability::new(replicas, Duration::from_millis(timeout)).unwrap();
        if aof {
            d = d.with_aof();
        }
        let (valid_until, now) = (Instant::from_millis(valid_until), Instant::from_millis(now));
        match d.command(valid_until, now) {
            Ok((bytes, deadline)) => {
                prop_assert!(now < valid_until);
                prop_assert_eq!(deadline, valid_until);
                let text = String::from_utf8(bytes).unwrap();
                let waited: u64 = text.trim_end().rsplit("\r\n").next().unwrap().parse().unwrap();
                prop_assert!(waited >= 1);
                prop_assert!(waited <= timeout);
                prop_assert!(waited <= valid_until.saturating_since(now).as_millis());
            }
            Err(e) => {
                prop_assert_eq!(e, DurableError::Expired);
                prop_assert!(now >= valid_until);
            }
        }
    }

    #[test]
    fn only_enough_replicas_in_time_confirm(
        replicas in 1u32..8, acked in -2i64..10, now in 0u64..2_000,
    ) {
        let d = Durability::new(replicas, Duration::from_millis(100)).unwrap();
        let reply = format!(":{acked}\r\n");
        let valid_until = Instant::from_millis(1_000);
        let judged = d.judge(reply.as_bytes(), Protocol::Resp2, valid_until, Instant::from_millis(now));
        prop_assert_eq!(
            judged.is_ok(),
            acked >= i64::from(replicas) && now < 1_000
        );
    }

    #[test]
    fn garbage_never_panics_nor_confirms(bytes in proptest::collection::vec(any::<u8>(), 0..64), resp3: bool, aof: bool) {
        let protocol = if resp3 { Protocol::Resp3 } else { Protocol::Resp2 };
        let mut d = Durability::new(3, Duration::from_millis(100)).unwrap();
        if aof {
            d = d.with_aof();
        }
        let _ = Durability::reply_len(&bytes);
        if d.judge(&bytes, protocol, Instant::from_millis(1_000), Instant::from_millis(1)).is_ok() {
            // Only a count of at least 3 confirms.
            let text = String::from_utf8_lossy(&bytes);
            prop_assert!(text.starts_with(':') || text.starts_with('*'), "{:?}", text);
        }
    }
}
