//! Task kinds built into every node, for operators and benchmarks: `noop`, `echo`, `sleep`, `spin`
//! (CPU-bound) and `fail` (fails its first attempts).
//!
//! Each says what it does in its attempt's log: `echo` its value as one line of compact JSON, `sleep`
//! `sleeping N ms`, `fail` `failing attempt N` when it fails.

// The archived twins rkyv derives carry no docs of their own; the types here document them.
#![allow(missing_docs)]

use std::time::{Duration, Instant};

use crate::grid::kinds::{AttemptInfo, Task, TaskError, TaskKinds};

pub use crate::limits::BUILTIN_DURATION_MS_MAX;

/// No fields (`{}` in JSON).
#[derive(
    rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize, serde::Deserialize, Debug, Clone, Default,
)]
pub struct Empty {}

/// Does nothing and succeeds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Noop;

impl Task for Noop {
    const NAME: &'static str = "noop";
    type Input = Empty;
    type Output = Empty;

    async fn run(&self, _input: Empty, _attempt: AttemptInfo) -> Result<Empty, TaskError> {
        Ok(Empty {})
    }
}

/// Any JSON value, kept as its text (rkyv has no JSON value type).
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct JsonText(pub String);

impl serde::Serialize for JsonText {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let value: serde_json::Value = serde_json::from_str(&self.0).map_err(serde::ser::Error::custom)?;
        value.serialize(serializer)
    }
}

impl<'de> serde::Deserialize<'de> for JsonText {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        Ok(JsonText(value.to_string()))
    }
}

/// `{"value": ...}`.
#[derive(
    rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize, serde::Deserialize, Debug, Clone, Default,
)]
pub struct EchoInput {
    /// Returned as is.
    #[serde(default = "null")]
    pub value: JsonText,
}

/// JSON text as one compact line (an rkyv submission's text may be spread over lines).
fn compact(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text).map_or_else(|_| text.to_string(), |value| value.to_string())
}

fn null() -> JsonText {
    JsonText("null".into())
}

/// Returns its input.
#[derive(Debug, Clone, Copy, Default)]
pub struct Echo;

impl Task for Echo {
    const NAME: &'static str = "echo";
    type Input = EchoInput;
    type Output = EchoInput;

    async fn run(&self, input: EchoInput, attempt: AttemptInfo) -> Result<EchoInput, TaskError> {
        attempt.log().info(compact(&input.value.0));
        Ok(input)
    }
}

/// `{"ms": N}`.
#[derive(
    rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize, serde::Deserialize, Debug, Clone, Default,
)]
pub struct DurationInput {
    /// Milliseconds.
    pub ms: u64,
}

fn checked(ms: u64) -> Result<Duration, TaskError> {
    if ms > BUILTIN_DURATION_MS_MAX {
        return Err(TaskError::new(format!("ms must be at most {BUILTIN_DURATION_MS_MAX}")));
    }
    Ok(Duration::from_millis(ms))
}

/// Waits without using a CPU.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sleep;

impl Task for Sleep {
    const NAME: &'static str = "sleep";
    type Input = DurationInput;
    type Output = Empty;

    async fn run(&self, input: DurationInput, attempt: AttemptInfo) -> Result<Empty, TaskError> {
        let duration = checked(input.ms)?;
        attempt.log().info(format_args!("sleeping {} ms", input.ms));
        tokio::time::sleep(duration).await;
        Ok(Empty {})
    }
}

/// Keeps a CPU busy, yielding every millisecond so it can be stopped.
#[derive(Debug, Clone, Copy, Default)]
pub struct Spin;

/// What `spin` reports.
#[derive(
    rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize, serde::Deserialize, Debug, Clone, Default,
)]
pub struct SpinOutput {
    /// Loop iterations done (so the work cannot be optimised away).
    pub iterations: u64,
}

/// The `spin` built-in's clock: real CPU time, which simulated time cannot stand for. The one time read
/// outside `clock.rs` (see its docs): user code burning as much CPU as it was asked to.
fn cpu_now() -> Instant {
    Instant::now() // clock-exception: user code's own CPU loop
}

impl Task for Spin {
    const NAME: &'static str = "spin";
    type Input = DurationInput;
    type Output = SpinOutput;

    async fn run(&self, input: DurationInput, _attempt: AttemptInfo) -> Result<SpinOutput, TaskError> {
        let deadline = cpu_now() + checked(input.ms)?;
        let mut iterations = 0u64;
        while cpu_now() < deadline {
            let slice = cpu_now() + Duration::from_millis(1);
            while cpu_now() < slice {
                iterations = std::hint::black_box(iterations.wrapping_add(1));
            }
            tokio::task::yield_now().await;
        }
        Ok(SpinOutput { iterations })
    }
}

/// `{"times": K}`.
#[derive(
    rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize, serde::Deserialize, Debug, Clone, Default,
)]
pub struct FailInput {
    /// Attempts that fail before one succeeds.
    pub times: u32,
}

/// Fails its first `times` attempts, then succeeds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Fail;

impl Task for Fail {
    const NAME: &'static str = "fail";
    type Input = FailInput;
    type Output = Empty;

    async fn run(&self, input: FailInput, attempt: AttemptInfo) -> Result<Empty, TaskError> {
        if attempt.number <= input.times {
            attempt.log().warn(format_args!("failing attempt {}", attempt.number));
            return Err(TaskError::new(format!(
                "attempt {} of the first {} fails by design",
                attempt.number, input.times
            )));
        }
        Ok(Empty {})
    }
}

/// Adds the built-ins to `kinds`.
pub fn register(kinds: TaskKinds) -> TaskKinds {
    kinds.with(Noop).with(Echo).with(Sleep).with(Spin).with(Fail)
}

/// The built-in kinds (`noop`, `echo`, `sleep`, `spin`, `fail`) and nothing else.
pub fn kinds() -> TaskKinds {
    register(TaskKinds::new())
}
