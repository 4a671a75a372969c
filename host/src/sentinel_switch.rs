//! The `+switch-master` subscription of one sentinel-managed node: a task that holds one
//! `SUBSCRIBE +switch-master` connection to a sentinel and tells the pool when the node's
//! service failed over, so its connections to the old primary go at once.
//!
//! The core's [`SwitchSubscription`] decides which sentinel to subscribe on, how long to wait
//! after a loss, what each pushed frame means and whether it concerns this node's service;
//! this module only opens the socket (with the sentinels' login when the URL gives one),
//! writes, reads and frames bytes, and sleeps until the core's pauses end.
//!
//! Invariants:
//! - the task holds the pool only weakly, and the pool aborts it when dropped: no
//!   subscription outlives the client that made it (shown by `host/tests/sentinel.rs`,
//!   `a_switch_master_announcement_is_followed_at_once`);
//! - following a switch writes nothing anywhere: the pool drops idle connections to the old
//!   primary, and the next connect still discovers the new one and checks its `ROLE`;
//! - each connect, login and subscribe is bounded by the request timeout
//!   ([`ConnectOptions::ready_timeout`]).

use std::sync::Weak;

use distlock_core::{
    Protocol, SUBSCRIBE_SWITCH_MASTER, SubscribeStep, SwitchAction, SwitchSubscription,
    parse_auth_reply, sentinel_auth_command, sentinel_reply_len,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;
use tracing::debug;

use crate::clock::Clock;
use crate::conn::{ConnectOptions, Stream};
use crate::endpoint::Endpoint;
use crate::pool::Pool;
use crate::sentinel::{exchange, sentinel_login};

/// Bytes one read from the subscription takes.
const READ_CHUNK: usize = 4096;

/// Starts the subscription of pool node `node`, a sentinel group `endpoint` names. The task
/// ends when the pool is gone; the pool aborts it on drop (see the module doc).
pub(crate) fn spawn(
    pool: Weak<Pool>,
    node: usize,
    endpoint: Endpoint,
    options: ConnectOptions,
    clock: Clock,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let service = endpoint.sentinel.clone().unwrap_or_default();
        let sentinels = endpoint.seeds();
        let mut subscription =
            SwitchSubscription::new(&service, sentinels.len(), crate::entropy::random_u64());
        loop {
            if pool.strong_count() == 0 {
                return;
            }
            let sentinel = match subscription.next(clock.now()) {
                SubscribeStep::Subscribe(sentinel) | SubscribeStep::Listen(sentinel) => sentinel,
                SubscribeStep::Pause(until) => {
                    tokio::time::sleep_until(clock.to_tokio(until)).await;
                    continue;
                }
                _ => {
                    tokio::time::sleep(crate::clock::to_std(distlock_core::SUBSCRIBE_RETRY_CAP))
                        .await;
                    continue;
                }
            };
            let Some((host, port)) = sentinels.get(sentinel) else {
                subscription.lost(sentinel, clock.now());
                continue;
            };
            let at = endpoint.at(host, *port);
            let subscribing = subscribe(&at, &endpoint, &options);
            let stream = match tokio::time::timeout(options.ready_timeout, subscribing).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(why)) => {
                    debug!(node, sentinel = %at.address(), %why, "+switch-master: not subscribed");
                    subscription.lost(sentinel, clock.now());
                    continue;
                }
                Err(_) => {
                    debug!(node, sentinel = %at.address(), "+switch-master: no answer in time");
                    subscription.lost(sentinel, clock.now());
                    continue;
                }
            };
            if listen(&pool, node, &mut subscription, sentinel, stream, clock)
                .await
                .is_none()
            {
                return;
            }
        }
    })
}

/// Connects to `sentinel`, logs in when `endpoint` gives the sentinels a login, and writes
/// the subscription.
async fn subscribe(
    sentinel: &Endpoint,
    endpoint: &Endpoint,
    options: &ConnectOptions,
) -> Result<Stream, String> {
    let mut stream = Stream::connect(sentinel, options)
        .await
        .map_err(|e| e.to_string())?;
    if let Some(login) = sentinel_login(endpoint) {
        let reply = exchange(&mut stream, &sentinel_auth_command(&login))
            .await
            .map_err(|e| e.to_string())?;
        reply
            .and_then(|reply| parse_auth_reply(&reply, Protocol::Resp2))
            .map_err(|e| format!("login: {e}"))?;
    }
    stream
        .write_all(SUBSCRIBE_SWITCH_MASTER)
        .await
        .map_err(|e| e.to_string())?;
    Ok(stream)
}

/// Reads the subscription on `sentinel` until it ends (reported to `subscription`), handing
/// each whole frame to the core and a switch of this service to the pool. `None` once the
/// pool is gone: the task ends.
async fn listen(
    pool: &Weak<Pool>,
    node: usize,
    subscription: &mut SwitchSubscription,
    sentinel: usize,
    mut stream: Stream,
    clock: Clock,
) -> Option<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; READ_CHUNK];
    loop {
        loop {
            let len = match sentinel_reply_len(&buf) {
                Ok(Some(len)) => len,
                Ok(None) => break,
                Err(_) => {
                    subscription.lost(sentinel, clock.now());
                    return Some(());
                }
            };
            let frame: Vec<u8> = buf.drain(..len).collect();
            match subscription.frame(sentinel, &frame, Protocol::Resp2, clock.now()) {
                SwitchAction::Follow {
                    switch,
                    announced_by,
                } => {
                    debug!(node, old = ?switch.old, new = ?switch.new, "+switch-master: following");
                    pool.upgrade()?.follow(node, &switch.new, announced_by);
                }
                SwitchAction::Resubscribe => return Some(()),
                _ => {}
            }
        }
        match stream.read(&mut chunk).await {
            Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => {
                debug!(node, sentinel, "+switch-master: the subscription closed");
                subscription.lost(sentinel, clock.now());
                return Some(());
            }
        }
        if pool.strong_count() == 0 {
            return None;
        }
    }
}
