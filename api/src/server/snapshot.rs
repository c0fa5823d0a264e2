//! The published snapshot: what every read is served from. The sequencer replaces it after
//! each batch (arc-swap); readers never wait for the writer.

use ledger::Hash;
use projector::State;

#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    /// The projection after the first `size` records.
    pub state: State,
    /// Records durable and published; reads of the store stay below this.
    pub size: u64,
    pub root: Hash,
    /// The signed checkpoint note for `size`.
    pub checkpoint: String,
    pub origin: String,
}
