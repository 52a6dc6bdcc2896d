//! `tracing` events emitted inside an attempt, kept as that attempt's log lines.
//!
//! The worker runs each attempt's future under one [`tracing::Dispatch`] per worker
//! (`WithSubscriber`), a [`Capture`] that wraps the dispatcher that was the default when the worker
//! started (the node's own log). Every call is forwarded to it, so spans and events still reach the
//! node's log as before; in addition, an event at level info or above that happens while an
//! attempt's future is being polled (found through the thread-local attempt scope of
//! `grid::kinds::with_attempt_log`) becomes a line of that attempt's log. One dispatcher per worker,
//! not per attempt: registering a dispatcher rebuilds every callsite's interest, which is cheap once
//! and wasteful per attempt.
//!
//! What it does not capture: debug and trace events (libraries a task calls are chatty there; a task
//! that wants them kept logs them through `attempt.log().debug(..)`), and events of tasks that `run`
//! spawns onto the runtime, which run outside the attempt's future (they may carry the logger:
//! `attempt.log()` is cheap to clone).

use std::fmt::Write as _;

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Dispatch, Event, Level, Metadata, Subscriber};

use crate::grid::kinds::{current_attempt_log, LogLevel};
use crate::limits::TASK_LOG_TEXT_BYTES_MAX;

/// The least severe level captured.
const CAPTURED_LEVEL: Level = Level::INFO;

/// A dispatcher that keeps attempts' events and forwards everything to the current default one.
pub fn capture_default() -> Dispatch {
    tracing::dispatcher::get_default(|inner| Dispatch::new(Capture { inner: inner.clone() }))
}

/// Forwards to `inner`; keeps attempts' events too.
struct Capture {
    inner: Dispatch,
}

fn captured(metadata: &Metadata<'_>) -> bool {
    metadata.is_event() && *metadata.level() <= CAPTURED_LEVEL
}

fn level(level: Level) -> LogLevel {
    match level {
        Level::ERROR => LogLevel::Error,
        Level::WARN => LogLevel::Warn,
        Level::INFO => LogLevel::Info,
        Level::DEBUG => LogLevel::Debug,
        Level::TRACE => LogLevel::Trace,
    }
}

impl Subscriber for Capture {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        let inner = self.inner.register_callsite(metadata);
        if captured(metadata) && !inner.is_always() {
            // Decided per event: captured only inside an attempt.
            Interest::sometimes()
        } else {
            inner
        }
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.inner.enabled(metadata) || (captured(metadata) && current_attempt_log().is_some())
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        // tracing's global level filter is the most verbose of every registered dispatcher's hint,
        // the inner one's included: this one adds only what it captures.
        Some(LevelFilter::from_level(CAPTURED_LEVEL))
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        self.inner.new_span(span)
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        self.inner.record(span, values);
    }

    fn record_follows_from(&self, span: &Id, follows: &Id) {
        self.inner.record_follows_from(span, follows);
    }

    fn event(&self, event: &Event<'_>) {
        let metadata = event.metadata();
        if captured(metadata) {
            if let Some(log) = current_attempt_log() {
                let mut text = Text::default();
                event.record(&mut text);
                log.line(level(*metadata.level()), text.finish());
            }
        }
        if self.inner.enabled(metadata) {
            self.inner.event(event);
        }
    }

    fn enter(&self, span: &Id) {
        self.inner.enter(span);
    }

    fn exit(&self, span: &Id) {
        self.inner.exit(span);
    }

    fn clone_span(&self, id: &Id) -> Id {
        self.inner.clone_span(id)
    }

    fn try_close(&self, id: Id) -> bool {
        self.inner.try_close(id)
    }

    fn current_span(&self) -> tracing_core::span::Current {
        self.inner.current_span()
    }
}

/// An event as one line: its message, then its other fields as `name=value`, bounded.
#[derive(Default)]
struct Text {
    message: String,
    fields: String,
}

impl Text {
    fn finish(self) -> String {
        match (self.message.is_empty(), self.fields.is_empty()) {
            (_, true) => self.message,
            (true, false) => self.fields,
            (false, false) => format!("{} {}", self.message, self.fields),
        }
    }

    fn full(&self) -> bool {
        self.message.len() + self.fields.len() > TASK_LOG_TEXT_BYTES_MAX
    }
}

impl Visit for Text {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else if !self.full() {
            self.record_debug(field, &value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if self.full() {
            return;
        }
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
            return;
        }
        if !self.fields.is_empty() {
            self.fields.push(' ');
        }
        let _ = write!(self.fields, "{}={value:?}", field.name());
    }
}
