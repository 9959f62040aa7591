//! Whether a direct path lives: the rule that tells a lossy path from a dead
//! one, in the spirit of ICE consent freshness (RFC 7675) and Tailscale's
//! trust window.
//!
//! # The rule
//!
//! Every authenticated frame that arrives on the direct path (on its socket,
//! from its remote address) refreshes it: probe acks, probes, stream data.
//! Keepalive probes go every [`ClientConfig::direct_keepalive`] (1 s). Let
//! SRTT be the smoothed round trip of the probes (RFC 6298's averaging) and
//! RTO = max(2 × SRTT, 200 ms).
//!
//! - **Suspect** when, at a keepalive, nothing was heard for
//!   `direct_keepalive + RTO`: the last keepalive went unanswered. Probes
//!   then go every [`ClientConfig::probe_interval`] (100 ms).
//! - **Alarmed** once [`ALARM_PROBES`] (3) of them are past their RTO
//!   unanswered: the relay is pinged
//!   ([`SessionBody::Ping`](crate::wire::frame::SessionBody::Ping)) every
//!   500 ms until it answers, and the client checks its own server mapping
//!   at once (a keepalive: after a NAT reboot it learns its new address
//!   there, and the server follows it).
//! - **Dead** when nothing was heard for `max(fallback_timeout, 4 × SRTT)`
//!   (3 s by default) *and* at least [`DEAD_PROBES`] probes sent since are
//!   past their RTO unanswered.
//! - A dead path is left for the relay only when **the relay answered a
//!   ping** since the suspicion began and the direct path stayed silent for
//!   max(1 s, RTO) after that answer: the relay is then demonstrably
//!   better. Until it does, the session stays where it is, probing both
//!   once a second, and falls back that long after the relay answers (or
//!   goes back to normal the moment the direct path does). The wait matters
//!   under bursty loss: when a burst on the access link ends, the relay and
//!   the direct path come back together, and the direct path answers too.
//!
//! At 20 % loss each way a probe's round trip fails with probability 0.36,
//! so ten unanswered probes in a row happen with probability 0.36^10 ≈
//! 4 × 10⁻⁵ per suspicion; a path that really dies is declared dead
//! `max(3 s, 4 × SRTT)` after the last thing heard from it.
//!
//! [`ClientConfig::direct_keepalive`]: crate::client::ClientConfig::direct_keepalive
//! [`ClientConfig::probe_interval`]: crate::client::ClientConfig::probe_interval

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::timer::Moment;

use crate::client::ClientConfig;

/// Probes past their RTO without an answer before a silent path is dead.
pub(crate) const DEAD_PROBES: usize = 10;
/// Probes past their RTO without an answer before the relay is asked and
/// the server mapping checked.
const ALARM_PROBES: usize = 3;
/// The shortest RTO: below it, scheduling jitter alone looks like loss.
const MIN_RTO: Duration = Duration::from_millis(200);
/// The shortest wait, after the relay answered, for the direct path to
/// answer too before the session falls back. Bursty loss (Wi-Fi, a busy
/// cell) silences both paths at once and lets both through again at once;
/// ten probes in this second tell a burst that ended from a dead path.
const CONFIRM_AFTER_RELAY: Duration = Duration::from_secs(1);
/// How often the relay is pinged while the direct path is suspect.
const RELAY_PING_INTERVAL: Duration = Duration::from_millis(500);
/// Probing and pinging while the path is dead and the relay silent.
const DEAD_INTERVAL: Duration = Duration::from_secs(1);
/// Probes remembered for round-trip samples.
const MAX_OUTSTANDING: usize = 64;

/// What the direct path looks like now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Heard from recently enough.
    Healthy,
    /// An answer is overdue: probe fast (after several, ping the relay and
    /// check the server mapping too).
    Suspect,
    /// Silent for the dead time with enough probes unanswered, and the
    /// relay answered: fall back.
    Dead,
    /// As dead, but the relay has not answered either: stay, and keep
    /// asking both.
    DeadRelaySilent,
}

/// What the path must do after a liveness check (see [`Liveness::check`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Actions<T = Instant> {
    /// Send a keepalive probe on the direct path now.
    pub(crate) probe: bool,
    /// Ping the peer over the relay now.
    pub(crate) ping_relay: bool,
    /// The suspicion just began: the client should check its server mapping.
    pub(crate) check_server: bool,
    /// Leave the direct path for the relay.
    pub(crate) fall_back: bool,
    /// When to check again.
    pub(crate) next: Option<T>,
}

/// The liveness of one direct path. See the [module documentation](self).
#[derive(Debug)]
pub(crate) struct Liveness<T = Instant> {
    last_heard: T,
    srtt: Option<Duration>,
    /// Probes sent since `last_heard` (their seal counter and send time),
    /// oldest first.
    outstanding: VecDeque<(u64, T)>,
    suspect_since: Option<T>,
    /// [`ALARM_PROBES`] probes went unanswered in this suspicion.
    alarmed: bool,
    /// When the relay answered a ping in this suspicion.
    relay_answered: Option<T>,
    last_relay_ping: Option<T>,
    last_probe: Option<T>,
}

impl<T: Moment> Liveness<T> {
    /// A path that was proved at `now`.
    pub(crate) fn new(now: T) -> Self {
        Liveness {
            last_heard: now,
            srtt: None,
            outstanding: VecDeque::new(),
            suspect_since: None,
            alarmed: false,
            relay_answered: None,
            last_relay_ping: None,
            last_probe: Some(now),
        }
    }

    /// The smoothed round trip, once measured.
    pub(crate) fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    /// An authenticated frame arrived on the path.
    pub(crate) fn heard(&mut self, now: T) {
        self.last_heard = now;
        self.outstanding.clear();
        self.suspect_since = None;
        self.alarmed = false;
        self.relay_answered = None;
    }

    /// A probe ack for the probe with seal counter `probe_counter` arrived
    /// on the path: a round-trip sample when it answers one we remember.
    pub(crate) fn on_probe_ack(&mut self, now: T, probe_counter: u64) {
        if let Some(&(_, sent)) = self.outstanding.iter().find(|(c, _)| *c == probe_counter) {
            let sample = now.saturating_duration_since(sent);
            // RFC 6298 §2: SRTT <- 7/8 SRTT + 1/8 R'.
            self.srtt = Some(match self.srtt {
                None => sample,
                Some(srtt) => (srtt * 7 + sample) / 8,
            });
        }
        self.heard(now);
    }

    /// A probe with seal counter `counter` left on the path.
    pub(crate) fn probe_sent(&mut self, now: T, counter: u64) {
        if self.outstanding.len() == MAX_OUTSTANDING {
            self.outstanding.pop_front();
        }
        self.outstanding.push_back((counter, now));
        self.last_probe = Some(now);
    }

    /// The relay answered a ping at `now`.
    pub(crate) fn relay_answered(&mut self, now: T) {
        if self.suspect_since.is_some() {
            self.relay_answered.get_or_insert(now);
        }
    }

    /// The timeout after which an unanswered probe counts as lost.
    pub(crate) fn rto(&self) -> Duration {
        self.srtt.map_or(MIN_RTO, |srtt| (srtt * 2).max(MIN_RTO))
    }

    /// How long the direct path must stay silent after the relay answered
    /// before the session falls back: [`CONFIRM_AFTER_RELAY`] or the RTO,
    /// whichever is longer.
    pub(crate) fn confirm_after(&self) -> Duration {
        self.rto().max(CONFIRM_AFTER_RELAY)
    }

    /// How long the path must be silent before it can be dead.
    pub(crate) fn dead_after(&self, config: &ClientConfig) -> Duration {
        config.fallback_timeout.max(self.srtt.unwrap_or_default() * 4)
    }

    fn suspect_after(&self, config: &ClientConfig) -> Duration {
        config.direct_keepalive + self.rto()
    }

    /// The path's state at `now`.
    pub(crate) fn verdict(&self, now: T, config: &ClientConfig) -> Verdict {
        let silence = now.saturating_duration_since(self.last_heard);
        if silence < self.suspect_after(config) {
            return Verdict::Healthy;
        }
        if silence < self.dead_after(config) || self.overdue(now) < DEAD_PROBES {
            return Verdict::Suspect;
        }
        match self.relay_answered {
            // The relay answered, and the direct path stayed silent for
            // `confirm_after` more: the relay is better. (A burst of loss
            // that ends lets both through again; the direct path's answer
            // then comes within that wait and cancels the fall back.)
            Some(at) if now >= at + self.confirm_after() => Verdict::Dead,
            Some(_) => Verdict::Suspect,
            None => Verdict::DeadRelaySilent,
        }
    }

    /// Checks the path at `now` (its keepalive timer fired) and says what to
    /// do: probe, ping the relay, check the server, fall back, and when to
    /// check next.
    pub(crate) fn check(&mut self, now: T, config: &ClientConfig) -> Actions<T> {
        let verdict = self.verdict(now, config);
        let mut actions =
            Actions { probe: false, ping_relay: false, check_server: false, fall_back: false, next: None };
        let probe_due = |interval: Duration| self.last_probe.map_or(now, |at| at + interval);
        match verdict {
            Verdict::Healthy => {
                // Suspicion is judged at these ticks only: a path that
                // answers wakes nobody between keepalives.
                let due = probe_due(config.direct_keepalive);
                actions.probe = now >= due;
                actions.next = Some(if actions.probe { now + config.direct_keepalive } else { due });
            }
            Verdict::Suspect => {
                self.suspect_since.get_or_insert(now);
                if !self.alarmed && self.overdue(now) >= ALARM_PROBES {
                    // Not one loss but several in a row: ask the relay, and
                    // have the client check its own server mapping.
                    self.alarmed = true;
                    actions.check_server = true;
                }
                actions.probe = now >= probe_due(config.probe_interval);
                actions.ping_relay =
                    self.alarmed && self.relay_answered.is_none() && self.relay_ping_due(now, RELAY_PING_INTERVAL);
                actions.next = Some(now + config.probe_interval);
            }
            Verdict::Dead => actions.fall_back = true,
            Verdict::DeadRelaySilent => {
                let due = probe_due(DEAD_INTERVAL);
                actions.probe = now >= due;
                actions.ping_relay = self.relay_ping_due(now, DEAD_INTERVAL);
                actions.next = Some(if actions.probe { now + DEAD_INTERVAL } else { due });
            }
        }
        if actions.ping_relay {
            self.last_relay_ping = Some(now);
        }
        actions
    }

    /// Probes sent since the path was last heard whose RTO has passed.
    fn overdue(&self, now: T) -> usize {
        let rto = self.rto();
        self.outstanding.iter().filter(|(_, sent)| now >= *sent + rto).count()
    }

    fn relay_ping_due(&self, now: T, interval: Duration) -> bool {
        match self.last_relay_ping {
            // A ping from an earlier suspicion does not count.
            Some(at) if Some(at) >= self.suspect_since => now.saturating_duration_since(at) >= interval,
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ClientConfig {
        ClientConfig::new("alice", "192.0.2.1:3478".parse().expect("address"))
    }

    /// Drives `liveness` from `start` for `span` as the path's timer would,
    /// answering each probe after `rtt` when `answer(i)` says so; returns
    /// when it fell back, if it did.
    fn drive(
        liveness: &mut Liveness<Duration>,
        start: Duration,
        span: Duration,
        rtt: Duration,
        mut answer: impl FnMut(u64) -> bool,
        relay_answers: bool,
    ) -> Option<Duration> {
        let config = config();
        let mut now = start;
        let mut counter = 0;
        let mut acks: VecDeque<(Duration, u64)> = VecDeque::new();
        let mut next = start;
        while now < start + span {
            while acks.front().is_some_and(|(at, _)| *at <= now) {
                let (at, c) = acks.pop_front().expect("checked");
                liveness.on_probe_ack(at, c);
            }
            if now >= next {
                let actions = liveness.check(now, &config);
                if actions.fall_back {
                    return Some(now - start);
                }
                if actions.probe {
                    counter += 1;
                    liveness.probe_sent(now, counter);
                    if answer(counter) {
                        acks.push_back((now + rtt, counter));
                    }
                }
                if actions.ping_relay && relay_answers {
                    liveness.relay_answered(now);
                }
                next = actions.next.expect("a direct path is always checked again");
            }
            now += Duration::from_millis(10);
        }
        None
    }

    #[test]
    fn a_path_that_answers_every_probe_stays_healthy_and_measures_its_rtt() {
        // Given a path proved now, answering every probe after 50 ms,
        let start = Duration::ZERO;
        let mut liveness: Liveness<Duration> = Liveness::new(start);
        // when it runs for a minute,
        let fell = drive(&mut liveness, start, Duration::from_secs(60), Duration::from_millis(50), |_| true, true);
        // then it never falls back, and its SRTT is the round trip.
        assert_eq!(fell, None);
        let srtt = liveness.srtt().expect("measured");
        assert!(srtt >= Duration::from_millis(50) && srtt <= Duration::from_millis(60), "{srtt:?}");
    }

    #[test]
    fn a_path_that_dies_is_declared_dead_within_the_dead_time_when_the_relay_answers() {
        // Given a path that answered and then goes silent,
        let start = Duration::ZERO;
        let mut liveness: Liveness<Duration> = Liveness::new(start);
        let config = config();
        // when no probe is answered any more,
        let fell = drive(&mut liveness, start, Duration::from_secs(20), Duration::from_millis(40), |_| false, true)
            .expect("a dead path falls back");
        // then it falls back after the dead time, not before, and within 5 s.
        assert!(fell >= liveness.dead_after(&config), "{fell:?}");
        assert!(fell <= Duration::from_secs(5), "{fell:?}");
    }

    #[test]
    fn a_dead_path_stays_while_the_relay_is_silent_too() {
        // Given a path and a relay that both went silent,
        let start = Duration::ZERO;
        let mut liveness: Liveness<Duration> = Liveness::new(start);
        let config = config();
        let fell = drive(&mut liveness, start, Duration::from_secs(20), Duration::from_millis(40), |_| false, false);
        // then the session does not move to a relay that does not answer,
        assert_eq!(fell, None);
        assert_eq!(liveness.verdict(start + Duration::from_secs(20), &config), Verdict::DeadRelaySilent);
        // and once the relay answers and the direct path stays silent for
        // an RTO more, it does.
        let answered = start + Duration::from_secs(20);
        liveness.relay_answered(answered);
        assert_eq!(liveness.verdict(answered, &config), Verdict::Suspect);
        assert_eq!(liveness.verdict(answered + liveness.confirm_after(), &config), Verdict::Dead);
    }

    #[test]
    fn twenty_percent_loss_each_way_never_looks_dead_over_an_hour() {
        // Given a path that loses 20 % of probes and 20 % of acks (a seeded
        // generator decides which), with a 100 ms round trip,
        let mut rng = crate::rng::Rng::new(7);
        let start = Duration::ZERO;
        let mut liveness: Liveness<Duration> = Liveness::new(start);
        // when it runs for an hour,
        let fell = drive(
            &mut liveness,
            start,
            Duration::from_secs(3600),
            Duration::from_millis(100),
            |_| rng.below(100) >= 20 && rng.below(100) >= 20,
            true,
        );
        // then it never falls back.
        assert_eq!(fell, None);
    }
}
