//! The properties, checked as the run goes, against true (simulator) time.
//!
//! The world reports what clients believe and do; the checker never looks inside a machine.
//! Times are true microseconds.

use std::fmt::Write as _;

/// A property that failed, with what shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub property: Property,
    /// True time, µs.
    pub at: u64,
    pub detail: String,
}

/// The properties the simulator checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Property {
    /// 1. No two clients believe a lease valid at the same instant.
    MutualExclusion,
    /// 2. A lease's fence exceeds the fence of every lease reported before its winning
    ///    attempt started.
    FenceOrder,
    /// 2b. A fencing resource never accepts a write of an older lease after a newer lease
    ///     wrote (end-to-end fencing).
    FencedResource,
    /// 3. A command with a stale or foreign token never removes or prolongs another token's
    ///    lease key on a node.
    OwnerOnly,
    /// 4. After the faults heal, every client acquires within a bound.
    Liveness,
    /// 5. No panic; every machine reaches its outcome by its deadline; the driver contract
    ///    (owed replies) holds.
    NoStuckMachines,
    /// 6. A renewing holder never believes in its lease past the instant the servers stop
    ///    holding it for its token on a majority (the keys expire, or another token takes
    ///    them): its renewal schedule reports `Lost` before anyone else could take the lock.
    LostBeforeValidityEnds,
    /// 7. The client drives its node-set session as the drivers do: it opens a connection
    ///    only when the session allows one (never while the node backs off, never beside a
    ///    connect under way), and every connect it reported started is answered by exactly
    ///    one end (connected or failed), none left unreported.
    Session,
    /// 8. Fair mode, first in first out among live waiters: a live waiter leaves the queue
    ///    only with the lock or by its own command; a hand-off goes only to a live waiter;
    ///    the lock goes to the first live waiter.
    FairQueue,
    /// 9. Fair mode, no lost wake-up: on a healthy network, while a live waiter queues, the
    ///    lock is without a confirmed holder for at most one cycle (`R / 2`), or `2 R` while
    ///    a waiter has crashed.
    FairWakeUp,
    /// 11. After a release returns confirmed, no node gains the released token's key: a
    ///     write of the acquire still on its way to a slow node is ordered before the
    ///     release's delete (they share the connection), never landing after it. Checked
    ///     without the replay faults (a half-open connection's late `SET` may land after
    ///     it: the name stays held until its TTL, a liveness cost).
    ReleasedStaysReleased,
}

impl Property {
    pub fn name(self) -> &'static str {
        match self {
            Property::MutualExclusion => "mutual exclusion",
            Property::FenceOrder => "fence order",
            Property::FencedResource => "fenced resource",
            Property::OwnerOnly => "owner-only release/extend",
            Property::Liveness => "liveness",
            Property::NoStuckMachines => "no panics, no stuck machines",
            Property::LostBeforeValidityEnds => "lost reported before validity ends",
            Property::Session => "connects only as the session allows, each reported once",
            Property::FairQueue => "fair: first in first out among live waiters",
            Property::FairWakeUp => "fair: no lost wake-up, bounded stall after a waiter crash",
            Property::ReleasedStaysReleased => {
                "no node gains a key after its token's release was confirmed"
            }
        }
    }
}

/// What the run counted besides violations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub acquires: u64,
    pub leases: u64,
    pub extends: u64,
    pub releases: u64,
    /// Pipelined releases written, and their deferred checks as the next machine read them:
    /// released, not ours any more, unconfirmed (the connection dropped or the reply was late
    /// or unread).
    pub pipelined_releases: u64,
    pub pipelined_released: u64,
    pub pipelined_not_held: u64,
    pub pipelined_unconfirmed: u64,
    pub resource_writes: u64,
    /// Writes a fencing resource refused (an older fence after a newer one).
    pub rejected_writes: u64,
    /// Writes that arrived after the writer's lease ended and after a newer lease wrote:
    /// what an unfenced resource accepts out of order.
    pub stale_writes: u64,
    /// Leases whose fence is below an earlier-reported lease's (allowed when the later
    /// lease's winning attempt started before the earlier one was reported).
    pub fence_inversions: u64,
    pub crashes: u64,
    pub partitions: u64,
    pub pauses: u64,
    pub lost_messages: u64,
    pub duplicated_requests: u64,
    pub final_acquires: u64,
    /// Leases held longer than their TTL under a renewal schedule.
    pub renewing_holds: u64,
    /// Extends the renewal schedules asked for that succeeded.
    pub renewals: u64,
    /// Renewing holds whose schedule reported `Lost`.
    pub renewals_lost: u64,
    /// Fair runs: waiters crashed (stopped for 2 to 4 request timeouts or more).
    pub waiter_crashes: u64,
    /// Fair runs: releases that handed the lock to a waiter.
    pub handoffs: u64,
    /// Fair runs on healthy networks: the longest time a live waiter queued with no confirmed
    /// holder, µs (property 10), with no waiter crashed, and while one had.
    pub longest_gap_us: u64,
    pub longest_gap_after_crash_us: u64,
}

#[derive(Debug, Clone, Copy)]
struct Belief {
    lease: usize,
    start: u64,
    end: u64,
}

#[derive(Debug, Clone)]
struct LeaseRecord {
    client: usize,
    fence: Option<u64>,
    reported: u64,
}

/// The checker's state for one run.
#[derive(Debug, Default)]
pub struct Checker {
    beliefs: Vec<Option<Belief>>,
    leases: Vec<LeaseRecord>,
    /// `(reported, largest fence reported so far)`, in report order.
    fence_prefix: Vec<(u64, u64)>,
    max_fence: u64,
    resource_max_fence: u64,
    resource_last_lease: Option<usize>,
    pub stats: Stats,
    pub violation: Option<Violation>,
}

impl Checker {
    pub fn new(clients: usize) -> Self {
        Checker {
            beliefs: vec![None; clients],
            ..Checker::default()
        }
    }

    pub fn fail(&mut self, property: Property, at: u64, detail: String) {
        if self.violation.is_none() {
            self.violation = Some(Violation {
                property,
                at,
                detail,
            });
        }
    }

    /// Client `client` starts believing in lease `lease` from `now` to `end` (an acquire or
    /// extend outcome): nobody else may believe in one at `now`.
    fn believe(&mut self, client: usize, lease: usize, now: u64, end: u64) {
        for (other, belief) in self.beliefs.iter().enumerate() {
            if other == client {
                continue;
            }
            if let Some(b) = belief
                && b.end > now
            {
                let mine = &self.leases[lease];
                let theirs = &self.leases[b.lease];
                let mut detail = String::new();
                let _ = write!(
                    detail,
                    "client {client} holds lease #{lease} (fence {:?}) from t={} until t={}, while client {other} holds lease #{} (fence {:?}) from t={} until t={}: both valid for {} µs",
                    mine.fence,
                    us(now),
                    us(end),
                    b.lease,
                    theirs.fence,
                    us(b.start),
                    us(b.end),
                    b.end.min(end) - now
                );
                self.fail(Property::MutualExclusion, now, detail);
                return;
            }
        }
        self.beliefs[client] = Some(Belief {
            lease,
            start: now,
            end,
        });
    }

    /// An acquire succeeded at `now`; its winning attempt started at `attempt_start` (the
    /// earliest true instant the client's clock showed `lease.started()`). Returns the lease's
    /// number.
    pub fn acquired(
        &mut self,
        client: usize,
        fence: Option<u64>,
        attempt_start: u64,
        now: u64,
        end: u64,
    ) -> usize {
        let lease = self.leases.len();
        self.stats.leases += 1;
        self.leases.push(LeaseRecord {
            client,
            fence,
            reported: now,
        });
        if let Some(fence) = fence {
            // Leases reported strictly before the attempt started.
            let before = self
                .fence_prefix
                .partition_point(|&(t, _)| t < attempt_start);
            if before > 0 {
                let (_, max_before) = self.fence_prefix[before - 1];
                if fence <= max_before {
                    let earlier = self
                        .leases
                        .iter()
                        .enumerate()
                        .take(lease)
                        .filter(|(_, l)| l.reported < attempt_start && l.fence >= Some(fence))
                        .map(|(i, l)| {
                            format!(
                                "#{i} (client {}, fence {:?}, reported t={})",
                                l.client,
                                l.fence,
                                us(l.reported)
                            )
                        })
                        .next()
                        .unwrap_or_default();
                    self.fail(
                        Property::FenceOrder,
                        now,
                        format!(
                            "client {client}'s lease #{lease} has fence {fence}, not above lease {earlier}, which was reported before this lease's attempt started at t={}",
                            us(attempt_start)
                        ),
                    );
                }
            }
            if fence < self.max_fence {
                self.stats.fence_inversions += 1;
            }
            self.max_fence = self.max_fence.max(fence);
            self.fence_prefix.push((now, self.max_fence));
        }
        if end > now {
            self.believe(client, lease, now, end);
        } else {
            self.beliefs[client] = None;
        }
        lease
    }

    /// An extend of `lease` succeeded at `now`, valid until `end`.
    pub fn extended(&mut self, client: usize, lease: usize, now: u64, end: u64) {
        self.stats.extends += 1;
        self.believes(client, lease, now, end);
    }

    /// From `now`, client `client` believes in `lease` until `end` (a renewing holder's
    /// schedule moved its validity): nobody else may believe in one at `now`.
    pub fn believes(&mut self, client: usize, lease: usize, now: u64, end: u64) {
        if end > now {
            self.believe(client, lease, now, end);
        }
    }

    /// The client stopped believing at `now` (it started releasing, or its extend failed).
    pub fn stop(&mut self, client: usize, now: u64) {
        if let Some(b) = &mut self.beliefs[client] {
            b.end = b.end.min(now);
        }
    }

    /// Property 6: the servers hold client `client`'s renewing lease for its token on a
    /// majority until `servers_end` (true µs, as their state is at `now`; keys expire on their
    /// own after that unless extended). The client must not believe in the lease past it:
    /// a belief is what the client acts on even if every later message is lost, so a belief
    /// ending later lets it act while another client may take the lock.
    pub fn servers_hold(&mut self, client: usize, now: u64, servers_end: u64) {
        let Some(b) = self.beliefs[client] else {
            return;
        };
        if b.end > now && b.end > servers_end {
            let detail = if servers_end <= now {
                format!(
                    "client {client} believes in lease #{} until t={}, but at t={} the servers no longer hold it on a majority",
                    b.lease,
                    us(b.end),
                    us(now)
                )
            } else {
                format!(
                    "client {client} believes in lease #{} until t={}, but its keys expire on a majority at t={}: another client could take the lock {} µs before it stops",
                    b.lease,
                    us(b.end),
                    us(servers_end),
                    b.end - servers_end
                )
            };
            self.fail(Property::LostBeforeValidityEnds, now, detail);
        }
    }

    /// A write of `lease` reached the protected resource at `now`.
    pub fn write(&mut self, client: usize, lease: usize, fence: Option<u64>, now: u64) {
        self.stats.resource_writes += 1;
        let stale = self.resource_last_lease.is_some_and(|last| lease < last);
        match fence {
            Some(fence) => {
                if fence < self.resource_max_fence {
                    self.stats.rejected_writes += 1;
                    return;
                }
                self.resource_max_fence = fence;
                if stale {
                    let last = self.resource_last_lease.unwrap_or_default();
                    self.fail(
                        Property::FencedResource,
                        now,
                        format!(
                            "the fencing resource accepted client {client}'s write of lease #{lease} (fence {fence}) after lease #{last} (fence {:?}) had written",
                            self.leases[last].fence
                        ),
                    );
                }
            }
            None => {
                if stale {
                    self.stats.stale_writes += 1;
                }
            }
        }
        self.resource_last_lease = Some(self.resource_last_lease.map_or(lease, |l| l.max(lease)));
    }
}

/// A true time for messages: milliseconds with µs precision.
pub fn us(t: u64) -> String {
    format!("{}.{:03}ms", t / 1000, t % 1000)
}
