//! Actor kinds built into every node: the durable `counter` (`{"add": N}` answers `{"total": T}`),
//! for operators, examples and benchmarks.

// The archived twins rkyv derives carry no docs of their own; the types here document them.
#![allow(missing_docs)]

use super::model::{ActorContext, ActorError, ActorKinds, GridActor};

/// A counter's message: `{"add": N}` (N may be negative; 0 reads the total).
#[derive(
    rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize, serde::Deserialize, Debug, Clone, Default,
)]
pub struct Add {
    /// Added to the total.
    pub add: i64,
}

/// A counter's reply: `{"total": T}`.
#[derive(
    rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize, serde::Deserialize, Debug, Clone, Default,
)]
pub struct Total {
    /// The total after the message.
    pub total: i64,
}

/// A durable counter per key: its total is committed after every message and survives its node.
#[derive(Debug, Clone, Default)]
pub struct Counter {
    total: i64,
}

impl GridActor for Counter {
    const KIND: &'static str = "counter";
    const DURABLE: bool = true;
    type Message = Add;
    type Reply = Total;

    fn activate(_key: &str, state: Option<&[u8]>) -> Result<Counter, ActorError> {
        let total = match state {
            None | Some([]) => 0,
            Some(bytes) => i64::from_le_bytes(
                bytes
                    .try_into()
                    .map_err(|_| ActorError::new(format!("a counter's state is 8 bytes, not {}", bytes.len())))?,
            ),
        };
        Ok(Counter { total })
    }

    async fn handle(&mut self, message: Add, _ctx: &ActorContext) -> Result<Total, ActorError> {
        self.total = self
            .total
            .checked_add(message.add)
            .ok_or_else(|| ActorError::new(format!("the total {} plus {} overflows", self.total, message.add)))?;
        Ok(Total { total: self.total })
    }

    fn snapshot(&self) -> Result<Vec<u8>, ActorError> {
        Ok(self.total.to_le_bytes().to_vec())
    }
}

/// The built-in actor kinds (`counter`).
pub fn kinds() -> ActorKinds {
    ActorKinds::new().with::<Counter>()
}
