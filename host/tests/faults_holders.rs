//! Holders that stop without saying so: a `distlock exec` holder frozen (SIGSTOP) past its
//! TTL together with its command, and one killed (SIGKILL) outright. Neither renews nor
//! releases.
//!
//! It shows where the lock's protection ends and the fence's begins: the lock frees at the
//! TTL and the next holder gets a larger fence; a paused holder that wakes up may act before
//! it notices the loss, and only a resource that checks the fence refuses that write.
//!
//! Each test starts its own `redis-server` on a free port; without it they fail
//! (`DISTLOCK_SKIP_REDIS=1` skips them).

mod support;

use std::time::{Duration, Instant};

use distlock_host::{Client, Released};
use support::faults::deadline;
use support::holders::{ExecHolder, FencedStore};
use support::{
    RedisServer, bounded, distlock, require_redis, run_bounded, send_signal, show, unique_name,
    wait_for,
};

/// A paused holder: `distlock exec --fenced` and its command are frozen (SIGSTOP) past the
/// TTL; B takes the lock with a larger fence and writes; then the holder is thawed
/// (SIGCONT) and its command writes with the fence it was given (`DISTLOCK_FENCE`). The lock
/// cannot stop that write — a paused process learns of the loss only after it acted (`exec`
/// runs with `--on-lost warn` here to make the point) — but the fenced resource refuses it.
#[test]
fn paused_holder_is_fenced_off() {
    require_redis!();
    let server = RedisServer::start();
    let url = server.url();
    let name = unique_name("paused");
    // The command: wait for the go, then ask the resource for a write with its fence.
    let mut holder = ExecHolder::spawn(
        &url,
        &name,
        &["--ttl", "1s", "--fenced", "--on-lost", "warn"],
        r#"while [ ! -e "$HOLDER_DIR/go" ]; do sleep 0.01; done
echo "$DISTLOCK_FENCE first holder" > "$HOLDER_DIR/request.tmp"
mv "$HOLDER_DIR/request.tmp" "$HOLDER_DIR/request""#,
    );
    let first = holder.fence();
    let command = holder.command_pid();
    let mut store = FencedStore::default();
    store
        .write(first, "first holder, before the pause")
        .expect("first write");

    // Freeze the whole holder: distlock (so it cannot renew) and its command.
    send_signal(holder.distlock.0.id(), "STOP");
    send_signal(command, "STOP");
    let paused_at = Instant::now();

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let b = runtime.block_on(async {
        let client = Client::connect([&url]).await.expect("connect B");
        let (guard, _) = bounded(
            "B's acquire",
            deadline(Duration::from_secs(5)),
            client
                .lock(&name)
                .ttl(Duration::from_secs(30))
                .fenced(true)
                .wait(Duration::from_secs(5))
                .acquire(),
        )
        .await;
        guard.expect("B acquires once the paused holder's key expired")
    });
    let second = b.fence().expect("fenced");
    assert!(
        paused_at.elapsed() >= Duration::from_millis(500),
        "B got in {:?} after the pause, before the holder's TTL could run out",
        paused_at.elapsed()
    );
    assert!(second > first, "fences {first} then {second}");
    store.write(second, "B").expect("B's write");

    // Thaw. distlock finds the lock gone and (with --on-lost warn) says so and lets the
    // command run on; the command then writes with its old fence.
    send_signal(command, "CONT");
    send_signal(holder.distlock.0.id(), "CONT");
    wait_for("exec to report the loss", Duration::from_secs(10), || {
        holder.stderr().contains("lost").then_some(())
    });
    std::fs::write(holder.path("go"), "").expect("go");
    let line = wait_for("the stale write", Duration::from_secs(10), || {
        std::fs::read_to_string(holder.path("request")).ok()
    });
    let (fence, what) = line.trim().split_once(' ').expect("fence and text");
    let fence: u64 = fence.parse().expect("a fence");
    assert_eq!(fence, first, "the command kept its own fence");
    let refused = store.write(fence, what);
    assert!(
        refused.is_err(),
        "the resource took a stale write: {store:?}"
    );
    assert_eq!(store.last_fence(), Some(second));

    // distlock noticed the loss once it ran again, and exits with its command.
    let status = wait_for("the holder to exit", Duration::from_secs(10), || {
        holder.distlock.0.try_wait().expect("status")
    });
    assert_eq!(
        status.code(),
        Some(0),
        "exec exits with its command's code: {}",
        holder.stderr()
    );
    runtime.block_on(async {
        assert_eq!(b.release().await.expect("B releases"), Released::Free);
    });
    eprintln!("fences {first} (paused, refused) then {second}; {refused:?}");
}

/// A holder killed with SIGKILL renews nothing and releases nothing; the next holder, after
/// the TTL, gets a larger fence.
#[test]
fn sigkilled_holder_next_fence_is_larger() {
    require_redis!();
    let server = RedisServer::start();
    let url = server.url();
    let name = unique_name("killed-fence");
    let mut holder = ExecHolder::spawn(&url, &name, &["--ttl", "1s", "--fenced"], "exec sleep 60");
    let first = holder.fence();
    holder.command_pid();
    holder.distlock.0.kill().expect("SIGKILL distlock");
    let _ = holder.distlock.0.wait();
    // The command runs on unprotected (nothing stops it once distlock is dead): end it now.
    drop(holder);

    let out = run_bounded(
        distlock(
            &url,
            &[
                "acquire", "--name", &name, "--ttl", "10s", "--wait", "5s", "--fenced", "--json",
            ],
        ),
        Duration::from_secs(30),
    )
    .expect("run distlock acquire");
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let second = value["fence"].as_u64().expect("a fence");
    assert!(second > first, "fences {first} then {second}");
}
