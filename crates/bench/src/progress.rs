//! Live progress on stderr while ramping and running.
//!
//! Hidden with `--json`, in worker processes, and when stderr is not a
//! terminal (CI logs, pipes), so machine output stays clean.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::phase::Live;

pub struct Progress {
    bar: ProgressBar,
    visible: bool,
}

impl Progress {
    /// A progress display, drawn only if `wanted` and stderr is a terminal.
    pub fn new(wanted: bool) -> Progress {
        let visible = wanted && std::io::stderr().is_terminal();
        let bar = if visible {
            ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
        } else {
            ProgressBar::hidden()
        };
        Progress { bar, visible }
    }

    /// Starts the ramp display for `total` clients.
    pub fn ramp(&self, total: u64) {
        self.restyle(
            "{prefix:>12} [{bar:30}] {pos}/{len} clients {msg} ({elapsed})",
            total,
            "ramping",
        );
    }

    pub fn ramp_update(&self, live: &Live) {
        self.bar.set_position(live.opened + live.failed);
        if live.failed > 0 {
            self.bar.set_message(format!("({} failed)", live.failed));
        }
    }

    /// Starts a phase display of `length` (the bar counts milliseconds).
    pub fn phase(&self, name: &str, length: Duration) {
        self.restyle(
            "{prefix:>12} [{bar:30}] {msg}",
            u64::try_from(length.as_millis()).unwrap_or(u64::MAX).max(1),
            name,
        );
    }

    pub fn phase_update(&self, elapsed: Duration, live: &Live) {
        self.bar
            .set_position(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX));
        self.bar.set_message(format!(
            "sent {}  received {}  pongs {}",
            live.sent, live.received, live.pongs
        ));
    }

    /// A line above the bar (or on stderr when hidden but not quiet).
    pub fn note(&self, line: &str) {
        if self.visible {
            self.bar.println(line);
        }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }

    fn restyle(&self, template: &str, len: u64, prefix: &str) {
        if let Ok(style) = ProgressStyle::with_template(template) {
            self.bar.set_style(style.progress_chars("=> "));
        }
        self.bar.set_length(len);
        self.bar.set_position(0);
        self.bar.set_prefix(prefix.to_owned());
        self.bar.set_message(String::new());
        self.bar.reset_elapsed();
    }
}
