//! The progress bar of a run (stderr, only on a terminal and not with --json).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use keel_evals::runner::exec::Progress;

pub struct Bar(ProgressBar);

impl Bar {
    pub fn new(total: u64, show: bool) -> Bar {
        let bar = ProgressBar::with_draw_target(
            Some(total),
            if show && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                ProgressDrawTarget::stderr()
            } else {
                ProgressDrawTarget::hidden()
            },
        );
        if let Ok(style) =
            ProgressStyle::with_template("{spinner} {bar:30} {pos}/{len} cases  {msg}  eta {eta}")
        {
            bar.set_style(style);
        }
        Bar(bar)
    }

    pub fn finish(&self) {
        self.0.finish_and_clear();
    }
}

impl Progress for Bar {
    fn case_done(&self, arm: &str, pass: bool) {
        self.0.inc(1);
        if !pass {
            self.0.set_message(format!("last failure: {arm}"));
        }
    }
}
