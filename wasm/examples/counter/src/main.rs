//! `distlock-counter`: an example guest app (the `app` world, as a WASI command).
//!
//! It increments a shared counter in a file under a distlock lock, with a deliberately racy
//! read–sleep–write: two holders at once would lose an update, so an exact count at the end
//! shows the lock excluded. The end-to-end tests and `distlock run` use it; native clients
//! doing the same on the same file and lock name exclude with it.
//!
//! ```text
//! distlock-counter count NAME FILE ITERATIONS [HOLD_MS]   increment FILE ITERATIONS times
//! distlock-counter trap  NAME                             acquire, then trap (a panic)
//! distlock-counter trap-permit NAME                       take one of 2 permits, then trap
//! distlock-counter trap-many NAME                         take NAME:a and NAME:b, then trap
//! distlock-counter trap-fair NAME FILE                    take NAME in fair mode, trap once FILE exists
//! distlock-counter spin  NAME                             acquire, then loop forever
//! distlock-counter hog   NAME                             acquire, then eat memory
//! distlock-counter compute NAME DIR ID WAIT_MS THEN       get-or-compute NAME's value
//! ```
//!
//! `compute` asks for the value cached under NAME, waiting up to WAIT_MS for another guest's
//! computation. When it is this guest's turn to compute, it counts the computation in
//! `DIR/computations` (a racy increment under the computation's lock), waits (renewing the
//! lock) until `DIR/go` exists, then ends the computation as THEN says: `store` the value
//! `computed by ID`, `abandon` it, `drop` it unfinished and end, or `trap` while holding it.
//! It writes what it got to `DIR/ID.out`: `value …`, `abandoned` or `dropped`.
//!
//! Run it with `distlock run distlock-counter.wasm --dir DIR --redis URL -- count …`.

use std::process::ExitCode;
use std::time::Duration;

#[allow(unsafe_code, missing_docs, unreachable_pub, clippy::all)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../../wit",
        world: "app",
    });
}

use bindings::distlock::lock::distlock::{
    Client, Computation, Config, Error, Fetched, Lease, SemaphoreShape, Shape,
};

/// How long an acquire waits for the lock.
const WAIT_MS: u64 = 30_000;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("distlock-counter: {why}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<(), String> {
    let arg = |i: usize| args.get(i).map(String::as_str);
    let (Some(mode), Some(name)) = (arg(1), arg(2)) else {
        return Err(
            "usage: distlock-counter count|trap|trap-permit|trap-many|trap-fair|spin|hog|compute NAME [FILE [ITERATIONS [HOLD_MS]]]"
                .into(),
        );
    };
    let client = Client::open(&Config {
        nodes: Vec::new(),
        key_prefix: None,
        ttl_ms: Some(10_000),
        fenced: false,
        request_timeout_ms: None,
        fair: (mode == "trap-fair").then_some(true),
        no_scripts: None,
    })
    .map_err(|e| say(&e))?;
    match mode {
        "count" => {
            let file = arg(3).ok_or("count needs FILE")?;
            let iterations: u64 = arg(4)
                .and_then(|n| n.parse().ok())
                .ok_or("count needs ITERATIONS")?;
            let hold = Duration::from_millis(arg(5).and_then(|n| n.parse().ok()).unwrap_or(1));
            for _ in 0..iterations {
                let lease = client.acquire(name, WAIT_MS).map_err(|e| say(&e))?;
                increment(file, hold)?;
                lease.release().map_err(|e| say(&e))?;
            }
            println!("done {iterations}");
            Ok(())
        }
        "trap" => {
            let lease = client.acquire(name, WAIT_MS).map_err(|e| say(&e))?;
            println!("holding {}", lease.token());
            panic!("trapping on purpose while holding {}", lease.name());
        }
        "trap-permit" => {
            let two = Shape::Semaphore(SemaphoreShape {
                limit: 2,
                fair: None,
            });
            let lease = client
                .acquire_shaped(name, two, WAIT_MS)
                .map_err(|e| say(&e))?;
            println!("holding {}", lease.token());
            panic!(
                "trapping on purpose while holding a permit of {}",
                lease.name()
            );
        }
        "trap-many" => {
            let names = [format!("{name}:a"), format!("{name}:b")];
            let lease = client.acquire_many(&names, WAIT_MS).map_err(|e| say(&e))?;
            println!("holding {}", lease.token());
            panic!("trapping on purpose while holding {}", lease.name());
        }
        "trap-fair" => {
            let file = arg(3).ok_or("trap-fair needs FILE")?;
            let lease = client.acquire(name, WAIT_MS).map_err(|e| say(&e))?;
            println!("holding {}", lease.token());
            // Held until the caller says (by creating FILE) that its waiter has queued.
            let deadline = std::time::Instant::now() + Duration::from_millis(WAIT_MS);
            while !std::path::Path::new(file).exists() {
                if std::time::Instant::now() > deadline {
                    return Err(format!("{file} never appeared"));
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            panic!(
                "trapping on purpose while holding {} in fair mode",
                lease.name()
            );
        }
        "spin" => {
            let lease = client.acquire(name, WAIT_MS).map_err(|e| say(&e))?;
            println!("holding {}", lease.token());
            spin(&lease)
        }
        "hog" => {
            let lease = client.acquire(name, WAIT_MS).map_err(|e| say(&e))?;
            println!("holding {}", lease.token());
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        "compute" => {
            let (Some(dir), Some(id), Some(wait_ms), Some(then)) = (arg(3), arg(4), arg(5), arg(6))
            else {
                return Err("compute needs DIR ID WAIT_MS THEN".into());
            };
            let wait_ms: u64 = wait_ms.parse().map_err(|_| "WAIT_MS is a number")?;
            let out = format!("{dir}/{id}.out");
            let got = match client.get_or_lock(name, wait_ms).map_err(|e| say(&e))? {
                Fetched::Value(value) => format!("value {}", String::from_utf8_lossy(&value)),
                Fetched::Computing(computation) => compute(computation, dir, id, then)?,
            };
            std::fs::write(&out, got).map_err(|e| format!("writing {out}: {e}"))
        }
        other => Err(format!("unknown mode {other}")),
    }
}

/// This guest's turn to compute: counts the computation, waits for `DIR/go` while renewing
/// the lock, then ends as `then` says; what to write to the guest's `.out` file.
fn compute(computation: Computation, dir: &str, id: &str, then: &str) -> Result<String, String> {
    increment(&format!("{dir}/computations"), Duration::from_millis(1))?;
    let go = format!("{dir}/go");
    let deadline = std::time::Instant::now() + Duration::from_millis(WAIT_MS);
    while !std::path::Path::new(&go).exists() {
        if std::time::Instant::now() > deadline {
            return Err(format!("{go} never appeared"));
        }
        computation.renew().map_err(|e| say(&e))?;
        std::thread::sleep(Duration::from_millis(1));
    }
    match then {
        "store" => {
            let value = format!("computed by {id}");
            computation
                .store(value.as_bytes(), 60_000)
                .map_err(|e| say(&e))?;
            Ok(format!("value {value}"))
        }
        "abandon" => {
            computation.abandon().map_err(|e| say(&e))?;
            Ok("abandoned".into())
        }
        "drop" => {
            drop(computation);
            Ok("dropped".into())
        }
        "trap" => panic!("trapping on purpose while computing {}", computation.name()),
        other => Err(format!("unknown THEN {other}")),
    }
}

/// The racy read–sleep–write the lock has to protect.
fn increment(file: &str, hold: Duration) -> Result<(), String> {
    let seen: u64 = match std::fs::read_to_string(file) {
        Ok(text) => text
            .trim()
            .parse()
            .map_err(|_| format!("{file} does not hold a number"))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(format!("reading {file}: {e}")),
    };
    std::thread::sleep(hold);
    std::fs::write(file, (seen + 1).to_string()).map_err(|e| format!("writing {file}: {e}"))
}

/// A runaway guest: never returns, never calls out.
fn spin(lease: &Lease) -> ! {
    let mut n = 0u64;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
        std::hint::black_box(lease);
    }
}

/// An error, said for a person.
fn say(error: &Error) -> String {
    match error {
        Error::NotAcquired(n) => format!("lock is held by another owner ({} attempts)", n.attempts),
        Error::NotHeld => "the lease no longer holds the lock".into(),
        Error::Expired => "the lease's validity ran out".into(),
        Error::QuorumLost(q) => format!(
            "only {} of {} nodes granted, {} needed",
            q.granted, q.nodes, q.needed
        ),
        Error::Server(e) => format!("node {}: server error: {}", e.node, e.error.message),
        Error::Protocol(e) => format!("node {}: protocol error {:?}", e.node, e.error),
        Error::Cancelled => "cancelled".into(),
        Error::Invalid(e) => e.message.clone(),
        Error::Unavailable(why) => why.clone(),
    }
}
