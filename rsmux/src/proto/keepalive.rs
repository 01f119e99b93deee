//! Keepalive as pure timer logic (SPEC §6): a NOP every interval; the session dies when no
//! frame header at all arrived during a whole timeout period.
//!
//! Upstream exempts a session whose reading is paused because the receive budget is exhausted
//! (the peer may be fine, we are the slow side). That exemption lets a peer that fills our
//! budget and then goes silent, or never reads its socket, hold the session forever. Here the
//! exemption holds only if the connection accepted some of our bytes during the period: a
//! live peer reads our NOPs at least, a dead or hostile one does not.

use std::time::{Duration, Instant};

use crate::config::Config;

/// What a timer tick asks the session to do.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Tick {
    /// Queue a NOP.
    pub(crate) send_nop: bool,
    /// The peer went silent: close the session.
    pub(crate) timed_out: bool,
}

#[derive(Debug)]
pub(crate) struct Keepalive {
    interval: Duration,
    timeout: Duration,
    /// `None`: so far away that an `Instant` cannot hold it, that is never.
    next_ping: Option<Instant>,
    next_check: Option<Instant>,
    /// A frame was received since the last check.
    active: bool,
    /// The connection accepted bytes from us since the last check.
    transmitted: bool,
    enabled: bool,
}

impl Keepalive {
    pub(crate) fn new(config: &Config, now: Instant) -> Keepalive {
        Keepalive {
            interval: config.keep_alive_interval,
            timeout: config.keep_alive_timeout,
            next_ping: now.checked_add(config.keep_alive_interval),
            next_check: now.checked_add(config.keep_alive_timeout),
            active: false,
            transmitted: false,
            enabled: !config.keep_alive_disabled,
        }
    }

    /// A frame header was received.
    pub(crate) fn on_frame(&mut self) {
        self.active = true;
    }

    /// The connection accepted bytes from us.
    pub(crate) fn on_transmit(&mut self) {
        self.transmitted = true;
    }

    /// When the next tick is due.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        if !self.enabled {
            return None;
        }
        [self.next_ping, self.next_check]
            .into_iter()
            .flatten()
            .min()
    }

    /// Fires the timers due at `now`.
    pub(crate) fn handle_timeout(&mut self, now: Instant, reading_paused_by_budget: bool) -> Tick {
        let mut tick = Tick::default();
        if !self.enabled {
            return tick;
        }
        if let Some(due) = self.next_ping.filter(|&due| now >= due) {
            tick.send_nop = true;
            self.next_ping = next_after(due, self.interval, now);
        }
        if let Some(due) = self.next_check.filter(|&due| now >= due) {
            let exempt = reading_paused_by_budget && self.transmitted;
            if !self.active && !exempt {
                tick.timed_out = true;
            }
            self.active = false;
            self.transmitted = false;
            self.next_check = next_after(due, self.timeout, now);
        }
        tick
    }
}

/// The first `due + k * period` (k ≥ 1) strictly after `now`: a late wake-up does not fire a
/// burst of catch-up ticks. `None` when that is beyond what an `Instant` can hold.
fn next_after(due: Instant, period: Duration, now: Instant) -> Option<Instant> {
    let next = due.checked_add(period)?;
    if next > now {
        return Some(next);
    }
    let period_ns = period.as_nanos().max(1);
    let periods = now.duration_since(next).as_nanos() / period_ns + 1;
    let skip = u64::try_from(periods.saturating_mul(period_ns)).ok()?;
    next.checked_add(Duration::from_nanos(skip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        Config {
            keep_alive_interval: Duration::from_secs(1),
            keep_alive_timeout: Duration::from_secs(2),
            ..Config::default()
        }
    }

    #[test]
    fn pings_every_interval_and_times_out_a_silent_peer() {
        let t0 = Instant::now();
        let mut k = Keepalive::new(&cfg(), t0);
        assert_eq!(k.poll_timeout(), Some(t0 + Duration::from_secs(1)));
        let tick = k.handle_timeout(t0 + Duration::from_secs(1), false);
        assert_eq!(
            tick,
            Tick {
                send_nop: true,
                timed_out: false
            }
        );
        let tick = k.handle_timeout(t0 + Duration::from_secs(2), false);
        assert_eq!(
            tick,
            Tick {
                send_nop: true,
                timed_out: true
            }
        );
    }

    #[test]
    fn any_frame_keeps_it_alive_and_budget_exhaustion_exempts_a_live_peer() {
        let t0 = Instant::now();
        let secs = |n| t0 + Duration::from_secs(n);
        let mut k = Keepalive::new(&cfg(), t0);
        k.on_frame();
        assert!(!k.handle_timeout(secs(2), false).timed_out);
        // Nothing received in the next period, but we are the slow side and the peer still
        // takes our bytes.
        k.on_transmit();
        assert!(!k.handle_timeout(secs(4), true).timed_out);
        // Slow side, but the peer takes nothing from us either: gone or hostile.
        assert!(k.handle_timeout(secs(6), true).timed_out);
        // Transmitting alone does not keep a session whose peer is silent alive.
        let mut k = Keepalive::new(&cfg(), t0);
        k.on_transmit();
        assert!(k.handle_timeout(secs(2), false).timed_out);
    }

    #[test]
    fn disabled_never_fires() {
        let t0 = Instant::now();
        let c = Config {
            keep_alive_disabled: true,
            ..cfg()
        };
        let mut k = Keepalive::new(&c, t0);
        assert_eq!(k.poll_timeout(), None);
        assert_eq!(
            k.handle_timeout(t0 + Duration::from_secs(100), false),
            Tick::default()
        );
    }

    #[test]
    fn a_huge_jump_with_a_tiny_interval_catches_up_in_one_tick() {
        let t0 = Instant::now();
        let c = Config {
            keep_alive_interval: Duration::from_nanos(1),
            keep_alive_timeout: Duration::from_secs(3600),
            ..Config::default()
        };
        let mut k = Keepalive::new(&c, t0);
        let now = t0 + Duration::from_secs(65);
        assert!(k.handle_timeout(now, false).send_nop);
        assert!(k.poll_timeout().unwrap() > now);
    }

    #[test]
    fn durations_beyond_what_an_instant_holds_mean_never() {
        let t0 = Instant::now();
        let c = Config {
            keep_alive_interval: Duration::MAX,
            keep_alive_timeout: Duration::MAX,
            ..Config::default()
        };
        let mut k = Keepalive::new(&c, t0);
        assert_eq!(k.poll_timeout(), None);
        assert_eq!(
            k.handle_timeout(t0 + Duration::from_secs(1 << 40), false),
            Tick::default()
        );
        // A ping that fits once, whose next one no longer does.
        let huge = Duration::from_secs(1 << 40);
        let c = Config {
            keep_alive_interval: huge,
            keep_alive_timeout: Duration::MAX,
            ..Config::default()
        };
        let mut k = Keepalive::new(&c, t0);
        assert_eq!(k.poll_timeout(), Some(t0 + huge));
        if t0.checked_add(huge * 2).is_none() {
            assert!(k.handle_timeout(t0 + huge, false).send_nop);
            assert_eq!(k.poll_timeout(), None);
        }
        assert_eq!(next_after(t0, Duration::MAX, t0), None);
        assert_eq!(
            next_after(t0, Duration::from_nanos(1), t0),
            Some(t0 + Duration::from_nanos(1))
        );
    }

    #[test]
    fn late_wakeup_does_not_burst() {
        let t0 = Instant::now();
        let mut k = Keepalive::new(&cfg(), t0);
        k.on_frame();
        k.handle_timeout(t0 + Duration::from_millis(10_500), false);
        assert_eq!(k.poll_timeout(), Some(t0 + Duration::from_secs(11)));
    }
}
