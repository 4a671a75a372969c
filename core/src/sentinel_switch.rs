//! Following a Redis Sentinel group's `+switch-master` announcements: which sentinel to
//! subscribe on, what a pushed message says, whether it concerns this service, what to do
//! about it, and how long to wait before subscribing again after a loss — one answer for
//! every driver.
//!
//! A driver keeps one subscription per sentinel-managed node with a [`SwitchSubscription`]:
//! it subscribes on the sentinel [`SwitchSubscription::next`] names (after the sentinels'
//! login when one is given) by writing [`SUBSCRIBE_SWITCH_MASTER`], hands every whole frame
//! read from that connection to [`SwitchSubscription::frame`], and reports a connect that
//! failed or a connection that closed with [`SwitchSubscription::lost`]. A frame that
//! announces a new primary for this service is [`SwitchAction::Follow`]: the driver lets the
//! node's connections to the old primary go, so the next operation discovers (starting with
//! the sentinel that announced it) and checks `ROLE` on the new one at once, instead of first
//! meeting `READONLY` or a closed connection there.
//!
//! Invariants (unit tests below, property tests in `tests/sentinel.rs`):
//! - no bytes, however broken, panic anything here; a frame that is not a well-formed
//!   subscription reply or message ends the subscription ([`SwitchAction::Resubscribe`]):
//!   the connection is out of step;
//! - a message for another service, or on another channel, changes nothing;
//! - following a switch never writes anything: the new primary is still found through
//!   [`crate::Discovery`] and checked by `ROLE` before a lock command reaches it;
//! - subscribing again moves to the next sentinel; the first attempt after a working
//!   subscription is at once, each further one waits a jittered, doubling pause
//!   ([`SUBSCRIBE_RETRY_BASE`] up to [`SUBSCRIBE_RETRY_CAP`]), so a group that is down is not
//!   hammered; a confirmed subscription resets the pause.

use alloc::boxed::Box;
use alloc::string::String;

use crate::cluster::Primary;
use crate::resp::{Protocol, Reply, decode};
use crate::retry::{Backoff, Jitter, RetryPolicy};
use crate::sentinel::{MAX_SENTINELS, SentinelReplyError, sentinel_reply_len};
use crate::time::{Duration, Instant};

/// The channel a sentinel announces a new primary on.
pub const SWITCH_MASTER_CHANNEL: &[u8] = b"+switch-master";
/// `SUBSCRIBE +switch-master`.
pub const SUBSCRIBE_SWITCH_MASTER: &[u8] = b"*2\r\n$9\r\nSUBSCRIBE\r\n$14\r\n+switch-master\r\n";
/// The first pause before subscribing again after consecutive losses.
pub const SUBSCRIBE_RETRY_BASE: Duration = Duration::from_millis(100);
/// The longest pause between two subscribe attempts: a group back from an outage is heard
/// again within it.
pub const SUBSCRIBE_RETRY_CAP: Duration = Duration::from_secs(5);

/// A sentinel's announcement that a service has a new primary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Switch {
    /// The primary before the failover.
    pub old: Primary,
    /// The primary the sentinels now name.
    pub new: Primary,
}

/// What one frame read from a `+switch-master` subscription is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Pushed<'a> {
    /// The sentinel confirmed the subscription.
    Subscribed,
    /// A `+switch-master` message: `<service> <old-ip> <old-port> <new-ip> <new-port>`.
    Switched {
        /// The service it names.
        service: &'a str,
        /// Its old and new primary.
        switch: Box<Switch>,
    },
    /// A message on another channel, or another confirmation: nothing to do.
    Other,
}

/// Reads one whole frame from a `+switch-master` subscription (RESP2 arrays, RESP3 pushes).
///
/// # Errors
///
/// [`SentinelReplyError::Incomplete`] for a cut frame; [`SentinelReplyError::Refused`] for an
/// error reply (`NOAUTH`, `NOPERM`); [`SentinelReplyError::Malformed`] for anything that is not
/// a subscription reply, or a `+switch-master` message whose payload is not five fields with
/// valid ports and hosts.
pub fn parse_pushed(frame: &[u8], protocol: Protocol) -> Result<Pushed<'_>, SentinelReplyError> {
    match sentinel_reply_len(frame)? {
        Some(len) if len == frame.len() => {}
        Some(_) => return Err(SentinelReplyError::Malformed),
        None => return Err(SentinelReplyError::Incomplete),
    }
    let items = match decode(frame, protocol)? {
        Reply::Error(message) => {
            return Err(SentinelReplyError::Refused(
                crate::error::ServerError::from_message(message),
            ));
        }
        Reply::Array(items) | Reply::Push(items) => items,
        _ => return Err(SentinelReplyError::Malformed),
    };
    let [Reply::Bulk(kind), Reply::Bulk(channel), third] = items.as_slice() else {
        return Err(SentinelReplyError::Malformed);
    };
    match (*kind, third) {
        (b"subscribe", Reply::Integer(_)) if *channel == SWITCH_MASTER_CHANNEL => {
            Ok(Pushed::Subscribed)
        }
        (b"message", Reply::Bulk(payload)) if *channel == SWITCH_MASTER_CHANNEL => {
            parse_switch_payload(payload)
        }
        (b"subscribe" | b"unsubscribe", Reply::Integer(_)) | (b"message", Reply::Bulk(_)) => {
            Ok(Pushed::Other)
        }
        _ => Err(SentinelReplyError::Malformed),
    }
}

/// `<service> <old-ip> <old-port> <new-ip> <new-port>`.
fn parse_switch_payload(payload: &[u8]) -> Result<Pushed<'_>, SentinelReplyError> {
    let text = core::str::from_utf8(payload).map_err(|_| SentinelReplyError::Malformed)?;
    let mut fields = text.split(' ');
    let mut next = || fields.next().ok_or(SentinelReplyError::Malformed);
    let service = next()?;
    let old = primary(next()?, next()?)?;
    let new = primary(next()?, next()?)?;
    if fields.next().is_some() || service.is_empty() {
        return Err(SentinelReplyError::Malformed);
    }
    Ok(Pushed::Switched {
        service,
        switch: Box::new(Switch { old, new }),
    })
}

fn primary(host: &str, port: &str) -> Result<Primary, SentinelReplyError> {
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|&p| p != 0)
        .ok_or(SentinelReplyError::Malformed)?;
    Primary::new(host, port).ok_or(SentinelReplyError::Malformed)
}

/// What to do next with the subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubscribeStep {
    /// Connect to sentinel `i` (in the order given) and subscribe; report how it went with
    /// [`SwitchSubscription::frame`] and [`SwitchSubscription::lost`].
    Subscribe(usize),
    /// Nothing to do before this instant; then call [`SwitchSubscription::next`] again.
    Pause(Instant),
    /// The subscription on sentinel `i` is up (or being set up): read its frames.
    Listen(usize),
}

/// What a frame read from the subscription asks of the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SwitchAction {
    /// Nothing: a confirmation, or a message that does not concern this service.
    Nothing,
    /// This service failed over: let the node's connections to `switch.old` go; the next
    /// connect discovers starting with sentinel `announced_by` (it already names the new
    /// primary) and checks `ROLE` there.
    Follow {
        /// The old and the new primary.
        switch: Box<Switch>,
        /// The sentinel that announced it.
        announced_by: usize,
    },
    /// The frame was garbage or a refusal: close the connection; the subscription was
    /// reported lost, and [`SwitchSubscription::next`] says when and where to subscribe again.
    Resubscribe,
}

/// One node's `+switch-master` subscription. See the module doc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchSubscription {
    service: String,
    sentinels: usize,
    /// The sentinel subscribed on (or being subscribed on).
    current: Option<usize>,
    /// The sentinel the next attempt goes to.
    next_sentinel: usize,
    /// Losses since the last confirmed subscription.
    failures: u32,
    backoff: Backoff,
    seed: u64,
    /// Subscriptions confirmed so far: each starts the pauses afresh from a new seed.
    confirmed: u64,
    resume_at: Option<Instant>,
}

/// The pauses between subscribe attempts (see the module doc).
fn policy() -> RetryPolicy {
    RetryPolicy {
        base: SUBSCRIBE_RETRY_BASE,
        cap: SUBSCRIBE_RETRY_CAP,
        jitter: Jitter::Full,
        max_attempts: None,
    }
}

impl SwitchSubscription {
    /// A subscription for `service` over `sentinels` sentinels (at most [`MAX_SENTINELS`] are
    /// used); `seed` (from the driver's entropy) jitters the pauses between attempts.
    #[must_use]
    pub fn new(service: &str, sentinels: usize, seed: u64) -> Self {
        SwitchSubscription {
            service: String::from(service),
            sentinels: sentinels.min(MAX_SENTINELS),
            current: None,
            next_sentinel: 0,
            failures: 0,
            backoff: Backoff::new(policy(), seed),
            seed,
            confirmed: 0,
            resume_at: None,
        }
    }

    /// What to do now. With no sentinel at all, it pauses for the longest pause, every time.
    pub fn next(&mut self, now: Instant) -> SubscribeStep {
        if let Some(sentinel) = self.current {
            return SubscribeStep::Listen(sentinel);
        }
        if self.sentinels == 0 {
            return SubscribeStep::Pause(now.saturating_add(SUBSCRIBE_RETRY_CAP));
        }
        if let Some(resume) = self.resume_at {
            if now < resume {
                return SubscribeStep::Pause(resume);
            }
            self.resume_at = None;
        }
        let sentinel = self.next_sentinel % self.sentinels;
        self.current = Some(sentinel);
        SubscribeStep::Subscribe(sentinel)
    }

    /// The sentinel subscribed on, if any.
    #[must_use]
    pub fn current(&self) -> Option<usize> {
        self.current
    }

    /// The connect to sentinel `sentinel`, its login or its subscription failed, or the
    /// connection closed. Another sentinel's report is ignored.
    pub fn lost(&mut self, sentinel: usize, now: Instant) {
        if self.current != Some(sentinel) {
            return;
        }
        self.current = None;
        self.next_sentinel = (sentinel + 1) % self.sentinels.max(1);
        // The first loss after a working subscription tries the next sentinel at once: the
        // one that went may simply have restarted. Every further one waits longer.
        if self.failures > 0 {
            self.resume_at = Some(now.saturating_add(self.backoff.next_delay()));
        }
        self.failures = self.failures.saturating_add(1);
    }

    /// One whole frame read from sentinel `sentinel`'s subscription: what to do about it.
    /// A frame from a sentinel not subscribed on is [`SwitchAction::Nothing`].
    pub fn frame(
        &mut self,
        sentinel: usize,
        frame: &[u8],
        protocol: Protocol,
        now: Instant,
    ) -> SwitchAction {
        if self.current != Some(sentinel) {
            return SwitchAction::Nothing;
        }
        match parse_pushed(frame, protocol) {
            Ok(Pushed::Subscribed) => {
                self.failures = 0;
                self.confirmed = self.confirmed.wrapping_add(1);
                self.backoff = Backoff::new(policy(), self.seed.wrapping_add(self.confirmed));
                SwitchAction::Nothing
            }
            Ok(Pushed::Switched { service, switch }) if service == self.service => {
                SwitchAction::Follow {
                    switch,
                    announced_by: sentinel,
                }
            }
            Ok(_) => SwitchAction::Nothing,
            Err(_) => {
                self.lost(sentinel, now);
                SwitchAction::Resubscribe
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    fn message(payload: &str) -> alloc::vec::Vec<u8> {
        alloc::format!(
            "*3\r\n$7\r\nmessage\r\n$14\r\n+switch-master\r\n${}\r\n{payload}\r\n",
            payload.len()
        )
        .into_bytes()
    }

    #[test]
    fn a_switch_is_read_in_resp2_and_resp3() {
        let switched = Pushed::Switched {
            service: "mymaster",
            switch: Box::new(Switch {
                old: Primary::new("127.0.0.1", 6379).unwrap(),
                new: Primary::new("127.0.0.1", 6380).unwrap(),
            }),
        };
        let frame = message("mymaster 127.0.0.1 6379 127.0.0.1 6380");
        assert_eq!(parse_pushed(&frame, Protocol::Resp2), Ok(switched.clone()));
        let mut push = frame.clone();
        push[0] = b'>';
        assert_eq!(parse_pushed(&push, Protocol::Resp3), Ok(switched));
        assert_eq!(
            parse_pushed(
                b"*3\r\n$9\r\nsubscribe\r\n$14\r\n+switch-master\r\n:1\r\n",
                Protocol::Resp2
            ),
            Ok(Pushed::Subscribed)
        );
    }

    #[test]
    fn bad_payloads_are_malformed() {
        for bad in [
            "mymaster 127.0.0.1 6379 127.0.0.1",
            "mymaster 127.0.0.1 6379 127.0.0.1 6380 extra",
            "mymaster 127.0.0.1 0 127.0.0.1 6380",
            "mymaster 127.0.0.1 6379 127.0.0.1 70000",
            " 127.0.0.1 6379 127.0.0.1 6380",
            "mymaster  6379 127.0.0.1 6380",
        ] {
            assert_eq!(
                parse_pushed(&message(bad), Protocol::Resp2),
                Err(SentinelReplyError::Malformed),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_pushed(b"-NOAUTH Authentication required.\r\n", Protocol::Resp2),
            Err(SentinelReplyError::Refused(_))
        ));
    }

    #[test]
    fn only_this_service_is_followed() {
        let mut sub = SwitchSubscription::new("mymaster", 3, 7);
        assert_eq!(sub.next(t(0)), SubscribeStep::Subscribe(0));
        let other = message("other 127.0.0.1 1 127.0.0.1 2");
        assert_eq!(
            sub.frame(0, &other, Protocol::Resp2, t(0)),
            SwitchAction::Nothing
        );
        let ours = message("mymaster 127.0.0.1 1 127.0.0.1 2");
        assert!(matches!(
            sub.frame(0, &ours, Protocol::Resp2, t(0)),
            SwitchAction::Follow {
                announced_by: 0,
                ..
            }
        ));
        // From a sentinel not subscribed on: nothing.
        assert_eq!(
            sub.frame(1, &ours, Protocol::Resp2, t(0)),
            SwitchAction::Nothing
        );
        assert_eq!(sub.next(t(0)), SubscribeStep::Listen(0));
    }

    #[test]
    fn losses_move_on_at_once_then_back_off_until_a_subscription_is_confirmed() {
        let mut sub = SwitchSubscription::new("s", 3, 1);
        assert_eq!(sub.next(t(0)), SubscribeStep::Subscribe(0));
        sub.lost(0, t(0));
        assert_eq!(sub.next(t(0)), SubscribeStep::Subscribe(1));
        sub.lost(1, t(0));
        let SubscribeStep::Pause(until) = sub.next(t(0)) else {
            panic!("a second loss in a row pauses");
        };
        assert!(until > t(0) && until <= t(0).saturating_add(SUBSCRIBE_RETRY_BASE));
        assert_eq!(sub.next(until), SubscribeStep::Subscribe(2));
        let confirmed = b"*3\r\n$9\r\nsubscribe\r\n$14\r\n+switch-master\r\n:1\r\n";
        assert_eq!(
            sub.frame(2, confirmed, Protocol::Resp2, until),
            SwitchAction::Nothing
        );
        assert_eq!(
            sub.frame(2, b"garbage\r\n", Protocol::Resp2, until),
            SwitchAction::Resubscribe
        );
        assert_eq!(sub.next(until), SubscribeStep::Subscribe(0));
    }
}
