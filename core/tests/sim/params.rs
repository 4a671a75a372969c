//! What one simulation run is: a seed, the cluster's shape, fault settings and the variant.
//!
//! Everything else (each client's policy and TTL, each node's server version, each clock's
//! rate, every latency and fault time) is drawn from the seed, so `Params` replays a run
//! exactly. `Params` round-trips through a one-line text form for the replay command.

use std::fmt;

/// What is deliberately broken or left unprotected in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// The protocol as shipped, in the environment it is configured for.
    Correct,
    /// Clients subtract no clock-drift allowance (`Drift { per_million: 0, fixed: 0 }`) while
    /// clocks drift: validity without the drift term.
    ZeroDrift,
    /// Every clock drifts by up to ±1%, and clients keep Redlock's default allowance (1% of the
    /// TTL + 2 ms), which covers only the *relative* drift of ±0.5% clocks.
    WideClocksDefaultDrift,
    /// The nodes' compare-and-delete ignores the token (`ModelFaults::release_ignores_token`).
    BrokenRelease,
    /// The nodes' compare-and-extend ignores the token (`ModelFaults::extend_ignores_token`).
    BrokenExtend,
    /// A crashed node comes back at once, without its volatile keys (no delayed restart).
    ImmediateRestart,
    /// A crashed node comes back after the TTL but loses its fencing counters (no AOF).
    LostFenceCounter,
    /// No fencing, and clients pause (GC, VM) between checking validity and writing.
    UnfencedPauses,
    /// Renewing holders' driver ignores the schedule's `Lost` and acts until its own deadline:
    /// the last validity plus one renewal period of slack ("the key's TTL is longer anyway").
    RenewalIgnoresLost,
    /// Renewing holders run the schedule with validities not moved back by the drift
    /// allowance (`started + ttl`), and act until them.
    RenewalWithoutDrift,
    /// Clients reconnect a node whose connect failed at once, on their own, instead of
    /// waiting out the session's reconnect pause.
    ReconnectIgnoresSession,
    /// Fair mode on a node whose release hands the lock to the queue's head whether or not
    /// it is live, for good (`ModelFaults::handoff_ignores_liveness`).
    HandoffWithoutLiveness,
    /// Fair mode on a node whose release wakes the head without setting the lock to it
    /// (`ModelFaults::wake_before_handoff`).
    WakeBeforeHandoff,
    /// After an acquire returns at a quorum, clients leave a connection that still owes the
    /// acquire's replies (its requests on their way still run) and send the release over a
    /// new one: a slow node's `SET` can land after the delete.
    ReleaseBesideStragglers,
}

impl Variant {
    pub const ALL: [Variant; 14] = [
        Variant::Correct,
        Variant::ZeroDrift,
        Variant::WideClocksDefaultDrift,
        Variant::BrokenRelease,
        Variant::BrokenExtend,
        Variant::ImmediateRestart,
        Variant::LostFenceCounter,
        Variant::UnfencedPauses,
        Variant::RenewalIgnoresLost,
        Variant::RenewalWithoutDrift,
        Variant::ReconnectIgnoresSession,
        Variant::HandoffWithoutLiveness,
        Variant::WakeBeforeHandoff,
        Variant::ReleaseBesideStragglers,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Variant::Correct => "correct",
            Variant::ZeroDrift => "zero-drift",
            Variant::WideClocksDefaultDrift => "wide-clocks-default-drift",
            Variant::BrokenRelease => "broken-release",
            Variant::BrokenExtend => "broken-extend",
            Variant::ImmediateRestart => "immediate-restart",
            Variant::LostFenceCounter => "lost-fence-counter",
            Variant::UnfencedPauses => "unfenced-pauses",
            Variant::RenewalIgnoresLost => "renewal-ignores-lost",
            Variant::RenewalWithoutDrift => "renewal-without-drift",
            Variant::ReconnectIgnoresSession => "reconnect-ignores-session",
            Variant::HandoffWithoutLiveness => "handoff-without-liveness",
            Variant::WakeBeforeHandoff => "wake-before-handoff",
            Variant::ReleaseBesideStragglers => "release-beside-stragglers",
        }
    }

    /// Whether holders in this variant may renew (the correct protocol, and the broken
    /// renewal drivers). The other variants show a limit of acquire and validity; they keep
    /// their runs exactly as they were.
    pub fn renews(self) -> bool {
        matches!(
            self,
            Variant::Correct | Variant::RenewalIgnoresLost | Variant::RenewalWithoutDrift
        )
    }

    fn parse(text: &str) -> Option<Variant> {
        Variant::ALL.into_iter().find(|v| v.name() == text)
    }
}

/// Fault settings. A rate of 0 switches that fault off. Times are in milliseconds of true
/// (simulator) time; probabilities in parts per thousand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Faults {
    /// Every clock (clients' and nodes') runs at a fixed rate within ±`drift_ppm` parts per
    /// million of true time.
    pub drift_ppm: u32,
    /// The slowest ordinary one-way latency, µs (each message draws from 20 µs up to this).
    pub latency_us: u32,
    /// Messages delayed by up to three request timeouts (so they arrive after the sender
    /// gave up, and out of order across connections).
    pub spikes: u32,
    /// Messages lost; the connection then breaks (TCP), and both ends learn it later.
    pub loss: u32,
    /// Requests also delivered a second time, later, on a stray connection whose replies
    /// nobody reads (at-least-once delivery: a proxy retrying a command).
    pub dup: u32,
    /// Broken connections (by loss or a partition) that stay half-open: requests already on
    /// their way still reach the node and run late, after the client moved to a new
    /// connection; their replies are lost.
    pub late: u32,
    /// Mean time between partitions (one node, or one client, cut off for up to 3 s).
    pub partitions: u32,
    /// Mean time between node crashes (volatile keys lost; down, then maybe `LOADING`).
    pub crashes: u32,
    /// Mean time between `SCRIPT FLUSH`es on a node.
    pub flushes: u32,
    /// Mean time between `READONLY` spells on a node (a failover).
    pub readonly: u32,
    /// Mean time between pauses of one client (GC, VM); 0: clients never pause.
    pub pauses: u32,
    /// The longest pause.
    pub pause_max: u32,
}

impl Faults {
    /// No faults at all: perfect clocks, a fast and reliable network, nodes that never fail.
    pub const NONE: Faults = Faults {
        drift_ppm: 0,
        latency_us: 500,
        spikes: 0,
        loss: 0,
        dup: 0,
        late: 0,
        partitions: 0,
        crashes: 0,
        flushes: 0,
        readonly: 0,
        pauses: 0,
        pause_max: 0,
    };
}

/// One run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    pub seed: u64,
    /// 1, 3 or 5.
    pub nodes: usize,
    /// 2 to 16.
    pub clients: usize,
    /// Lock operations (acquire, release and extend machines run to their outcome) before the
    /// faults heal and the run drains.
    pub ops: u64,
    /// Fencing tokens on (every client's lock is fenced) or off.
    pub fenced: bool,
    /// Fair mode (every client's lock is fair): one node only.
    pub fair: bool,
    /// Scriptless (every client's lock is `Scripts::Never`, unfenced, not reentrant): the
    /// nodes have the native commands and no scripting at all.
    pub scriptless: bool,
    /// Pipelined release (one node only): every other pair of clients (2, 3, 6, 7, …)
    /// releases by `PipelinedRelease` when its connection owes nothing, and the next machine
    /// on the connection reads and checks the owed reply (`Machine::owe_release`).
    pub pipelined: bool,
    pub variant: Variant,
    pub faults: Faults,
}

impl Params {
    /// The one-line form used by the replay command.
    pub fn encode(&self) -> String {
        let f = &self.faults;
        format!(
            "seed={},nodes={},clients={},ops={},fenced={},fair={},scriptless={},pipelined={},variant={},drift={},latency={},spikes={},loss={},dup={},late={},partitions={},crashes={},flushes={},readonly={},pauses={},pause_max={}",
            self.seed,
            self.nodes,
            self.clients,
            self.ops,
            u8::from(self.fenced),
            u8::from(self.fair),
            u8::from(self.scriptless),
            u8::from(self.pipelined),
            self.variant.name(),
            f.drift_ppm,
            f.latency_us,
            f.spikes,
            f.loss,
            f.dup,
            f.late,
            f.partitions,
            f.crashes,
            f.flushes,
            f.readonly,
            f.pauses,
            f.pause_max
        )
    }

    /// Parses [`Params::encode`]'s form (missing fields take the no-fault defaults).
    pub fn decode(text: &str) -> Result<Params, String> {
        let mut p = Params {
            seed: 0,
            nodes: 3,
            clients: 4,
            ops: 2000,
            fenced: true,
            fair: false,
            scriptless: false,
            pipelined: false,
            variant: Variant::Correct,
            faults: Faults::NONE,
        };
        for field in text.trim().split(',').filter(|f| !f.is_empty()) {
            let (key, value) = field
                .split_once('=')
                .ok_or_else(|| format!("`{field}` is not key=value"))?;
            let num = || {
                value
                    .parse::<u64>()
                    .map_err(|_| format!("`{key}`: `{value}` is not a number"))
            };
            let small = || num().map(|n| u32::try_from(n).unwrap_or(u32::MAX));
            match key {
                "seed" => p.seed = num()?,
                "nodes" => p.nodes = num()? as usize,
                "clients" => p.clients = num()? as usize,
                "ops" => p.ops = num()?,
                "fenced" => p.fenced = num()? != 0,
                "fair" => p.fair = num()? != 0,
                "scriptless" => p.scriptless = num()? != 0,
                "pipelined" => p.pipelined = num()? != 0,
                "variant" => {
                    p.variant =
                        Variant::parse(value).ok_or_else(|| format!("unknown variant `{value}`"))?
                }
                "drift" => p.faults.drift_ppm = small()?,
                "latency" => p.faults.latency_us = small()?,
                "spikes" => p.faults.spikes = small()?,
                "loss" => p.faults.loss = small()?,
                "dup" => p.faults.dup = small()?,
                "late" => p.faults.late = small()?,
                "partitions" => p.faults.partitions = small()?,
                "crashes" => p.faults.crashes = small()?,
                "flushes" => p.faults.flushes = small()?,
                "readonly" => p.faults.readonly = small()?,
                "pauses" => p.faults.pauses = small()?,
                "pause_max" => p.faults.pause_max = small()?,
                other => return Err(format!("unknown field `{other}`")),
            }
        }
        if ![1, 3, 5].contains(&p.nodes) {
            return Err(format!("nodes must be 1, 3 or 5, not {}", p.nodes));
        }
        if p.fair && p.nodes != 1 {
            return Err("fair mode is single-node only".into());
        }
        if p.pipelined && p.nodes != 1 {
            return Err("pipelined release is single-node only".into());
        }
        if p.scriptless && (p.fair || p.fenced) {
            return Err("scriptless locks are neither fair nor fenced".into());
        }
        if !(1..=16).contains(&p.clients) {
            return Err(format!("clients must be 1 to 16, not {}", p.clients));
        }
        Ok(p)
    }

    /// The command that replays this run with its full trace.
    pub fn replay_command(&self) -> String {
        format!(
            "DISTLOCK_SIM_REPLAY='{}' cargo test -p distlock-core --test simulation -- --exact sim_replay --nocapture",
            self.encode()
        )
    }
}

impl fmt::Display for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.encode())
    }
}
