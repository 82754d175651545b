//! Latency attribution: `--debug` logs how long each lifecycle phase took
//! (parse, clone, namespaces, rootfs, pivot, process, ...). A disabled
//! debug level costs one comparison per phase.

use std::time::Instant;

/// Logs the time since the previous mark, named by phase.
pub struct Phases {
    last: Instant,
    who: &'static str,
}

impl Phases {
    pub fn start(who: &'static str) -> Self {
        Phases {
            last: Instant::now(),
            who,
        }
    }

    pub fn mark(&mut self, phase: &'static str) {
        let now = Instant::now();
        tracing::debug!(
            who = self.who,
            phase,
            us = (now - self.last).as_micros() as u64,
            "phase done"
        );
        self.last = now;
    }
}
