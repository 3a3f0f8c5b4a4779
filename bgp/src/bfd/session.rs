//! One BFD session (RFC 5880, asynchronous mode, single hop RFC 5881) as
//! a pure value: received packets, timer ticks and admin events in,
//! packets to send and state changes out, time passed in.
//!
//! - Until the session is Up the advertised Desired Min TX is at least
//!   1 s (§6.8.3); once Up it drops to the configured interval through a
//!   Poll Sequence, and the faster rate is used only after the Final.
//! - During a Poll Sequence the slower of the old and new TX intervals and
//!   the longer of the old and new detection times apply (§6.8.3).
//! - Periodic packets are jittered to 75–100 % of the interval (75–90 %
//!   with a detect multiplier of 1), §6.8.7.
//! - While the peer polls, a lower Desired Min TX from it does not shorten
//!   the detection time yet (it may send at the old rate until our Final);
//!   our own next packet is pulled in when our Final arrives.
//! - Detection time = the peer's Detect Mult × max(our Required Min RX,
//!   the peer's Desired Min TX) (§6.8.4). When it expires in Init or Up
//!   the session goes Down with diag 1 and forgets the peer's
//!   discriminator (§6.8.1).

use std::time::{Duration, Instant};

use crate::bfd::packet::{BfdState, ControlPacket, Diag};

/// The slow TX interval used while the session is not Up.
pub const SLOW_TX: Duration = Duration::from_secs(1);

/// A session's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BfdConfig {
    /// Desired Min TX once Up.
    pub desired_min_tx: Duration,
    /// Required Min RX.
    pub required_min_rx: Duration,
    /// Detect Mult.
    pub detect_mult: u8,
    /// Our discriminator (non-zero, unique per session on this node).
    pub local_disc: u32,
    /// Seed for the TX jitter.
    pub seed: u64,
}

/// What happens to a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// A validated control packet from the peer.
    Received(ControlPacket),
    /// Time passed; run the timers that are due.
    Tick,
    /// Take the session administratively down (planned maintenance).
    AdminDown,
    /// Leave AdminDown.
    AdminUp,
}

/// What the driver must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Send this packet to the peer.
    Send(ControlPacket),
    /// The session changed state.
    StateChange {
        /// The state before.
        from: BfdState,
        /// The state now.
        to: BfdState,
        /// Why (our diagnostic).
        diag: Diag,
        /// The peer said AdminDown: planned maintenance, not a failure.
        peer_admin_down: bool,
    },
}

/// One BFD session.
#[derive(Debug, Clone)]
pub struct BfdSession {
    cfg: BfdConfig,
    state: BfdState,
    diag: Diag,
    remote_disc: u32,
    remote_state: BfdState,
    remote_min_rx: Duration,
    remote_desired_tx: Duration,
    remote_detect_mult: u8,
    remote_cpi: bool,
    /// The Desired Min TX and Required Min RX in effect for timing.
    tx_in_use: Duration,
    rx_in_use: Duration,
    /// The values advertised; they become `*_in_use` when a Poll ends.
    tx_advertised: Duration,
    polling: bool,
    next_tx: Option<Instant>,
    detect_at: Option<Instant>,
    rng: u64,
}

fn us(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

fn from_us(v: u32) -> Duration {
    Duration::from_micros(u64::from(v))
}

impl BfdSession {
    /// A session in Down that starts sending slow packets at `now`.
    pub fn new(cfg: BfdConfig, now: Instant) -> Self {
        let slow = cfg.desired_min_tx.max(SLOW_TX);
        Self {
            cfg,
            state: BfdState::Down,
            diag: Diag::None,
            remote_disc: 0,
            remote_state: BfdState::Down,
            remote_min_rx: Duration::from_micros(1),
            remote_desired_tx: Duration::ZERO,
            remote_detect_mult: 0,
            remote_cpi: false,
            tx_in_use: slow,
            rx_in_use: cfg.required_min_rx,
            tx_advertised: slow,
            polling: false,
            next_tx: Some(now),
            detect_at: None,
            rng: cfg.seed | 1,
        }
    }

    /// The session state.
    pub fn state(&self) -> BfdState {
        self.state
    }

    /// Our current diagnostic.
    pub fn diag(&self) -> Diag {
        self.diag
    }

    /// The peer's discriminator (0 until heard, and after detection expiry).
    pub fn remote_disc(&self) -> u32 {
        self.remote_disc
    }

    /// The peer's C bit: its forwarding survives a control plane restart.
    pub fn remote_cpi(&self) -> bool {
        self.remote_cpi
    }

    /// The detection time in effect, once the peer is known.
    pub fn detection_time(&self) -> Option<Duration> {
        (self.remote_detect_mult > 0).then(|| {
            self.rx_in_use.max(self.remote_desired_tx) * u32::from(self.remote_detect_mult)
        })
    }

    /// When to call [`BfdSession::handle`] with [`Input::Tick`] next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.next_tx, self.detect_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Handles one input at `now`.
    pub fn handle(&mut self, now: Instant, input: Input) -> Vec<Output> {
        let mut out = Vec::new();
        match input {
            Input::Received(p) => self.receive(now, &p, &mut out),
            Input::Tick => self.tick(now, &mut out),
            Input::AdminDown => {
                if self.state != BfdState::AdminDown {
                    self.set_state(BfdState::AdminDown, Diag::AdminDown, false, &mut out);
                    self.detect_at = None;
                    out.push(Output::Send(self.packet(false)));
                }
            }
            Input::AdminUp => {
                if self.state == BfdState::AdminDown {
                    self.set_state(BfdState::Down, Diag::None, false, &mut out);
                    self.next_tx = Some(now);
                }
            }
        }
        out
    }

    fn receive(&mut self, now: Instant, p: &ControlPacket, out: &mut Vec<Output>) {
        self.remote_disc = p.my_disc;
        self.remote_state = p.state;
        self.remote_min_rx = from_us(p.required_min_rx_us);
        // The peer may keep sending at its old, slower rate until it gets
        // our Final: while it polls, a lower Desired Min TX does not yet
        // shorten the detection time.
        let desired_tx = from_us(p.desired_min_tx_us);
        if !(p.poll && desired_tx < self.remote_desired_tx) {
            self.remote_desired_tx = desired_tx;
        }
        self.remote_detect_mult = p.detect_mult;
        self.remote_cpi = p.cpi;
        if p.fin && self.polling {
            self.polling = false;
            self.tx_in_use = self.tx_advertised;
            self.rx_in_use = self.cfg.required_min_rx;
            // The faster rate applies now, not after a packet already
            // scheduled at the slow rate: the peer's detection time has
            // shrunk with the Final.
            let next = now + self.tx_in_use.max(self.remote_min_rx);
            if self.next_tx.is_some_and(|t| t > next) {
                self.next_tx = Some(now + self.jittered_interval());
            }
        }
        if self.state == BfdState::AdminDown {
            return;
        }
        let before = self.state;
        match (self.state, p.state) {
            (BfdState::Down, _) if p.state == BfdState::AdminDown => {}
            (_, BfdState::AdminDown) => {
                self.set_state(BfdState::Down, Diag::NeighborDown, true, out);
            }
            (BfdState::Down, BfdState::Down) => {
                self.set_state(BfdState::Init, Diag::None, false, out);
            }
            (BfdState::Down, BfdState::Init) | (BfdState::Init, BfdState::Init | BfdState::Up) => {
                self.set_state(BfdState::Up, Diag::None, false, out);
            }
            (BfdState::Up, BfdState::Down) => {
                self.set_state(BfdState::Down, Diag::NeighborDown, false, out);
            }
            _ => {}
        }
        if self.state != before {
            self.on_state_change(now);
        }
        if p.poll {
            // The Final goes out at once, outside the periodic schedule.
            let mut f = self.packet(false);
            f.fin = true;
            out.push(Output::Send(f));
        }
        // A stopped peer (Required Min RX 0) gets no periodic packets.
        if self.remote_min_rx.is_zero() {
            self.next_tx = None;
        } else if self.next_tx.is_none() {
            self.next_tx = Some(now);
        }
        self.detect_at = self.detection_time().map(|d| now + d);
    }

    fn tick(&mut self, now: Instant, out: &mut Vec<Output>) {
        if self.detect_at.is_some_and(|t| t <= now) {
            self.detect_at = None;
            self.remote_disc = 0;
            self.remote_detect_mult = 0;
            if matches!(self.state, BfdState::Init | BfdState::Up) {
                self.set_state(BfdState::Down, Diag::TimeExpired, false, out);
                self.on_state_change(now);
            }
        }
        if self.next_tx.is_some_and(|t| t <= now) {
            out.push(Output::Send(self.packet(self.polling)));
            self.next_tx = Some(now + self.jittered_interval());
        }
    }

    /// Timer changes that follow a state change.
    fn on_state_change(&mut self, now: Instant) {
        let want = if self.state == BfdState::Up {
            self.cfg.desired_min_tx
        } else {
            self.cfg.desired_min_tx.max(SLOW_TX)
        };
        if want == self.tx_advertised {
            return;
        }
        self.tx_advertised = want;
        if self.state == BfdState::Up {
            // Advertise the new interval with Poll; use it after the Final.
            self.polling = true;
            self.tx_in_use = self.tx_in_use.max(want);
            self.next_tx = Some(now);
        } else {
            self.polling = false;
            self.tx_in_use = want;
        }
    }

    fn set_state(
        &mut self,
        to: BfdState,
        diag: Diag,
        peer_admin_down: bool,
        out: &mut Vec<Output>,
    ) {
        let from = self.state;
        self.state = to;
        self.diag = diag;
        out.push(Output::StateChange {
            from,
            to,
            diag,
            peer_admin_down,
        });
    }

    fn packet(&self, poll: bool) -> ControlPacket {
        ControlPacket {
            diag: self.diag,
            state: self.state,
            poll,
            fin: false,
            cpi: false,
            demand: false,
            detect_mult: self.cfg.detect_mult,
            my_disc: self.cfg.local_disc,
            your_disc: self.remote_disc,
            desired_min_tx_us: us(self.tx_advertised),
            required_min_rx_us: us(self.cfg.required_min_rx),
            required_min_echo_rx_us: 0,
        }
    }

    /// max(our Desired Min TX in use, the peer's Required Min RX), less
    /// 0–25 % (10–25 % with a detect multiplier of 1).
    fn jittered_interval(&mut self) -> Duration {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let base = self.tx_in_use.max(self.remote_min_rx);
        let (lo, span) = if self.cfg.detect_mult == 1 {
            (75, 16)
        } else {
            (75, 26)
        };
        let pct = lo + (self.rng % span) as u32;
        base * pct / 100
    }
}
