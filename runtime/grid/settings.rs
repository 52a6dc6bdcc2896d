//! Cluster-wide settings: every limit that the replicated apply step enforces, committed through the
//! log so that every replica applies every entry under the same limits.
//!
//! A node's flags (`--znode-data-bytes-max`, ...) only say what the cluster should use when it first
//! forms: the first leader of a cluster without committed settings proposes its own, and from then on
//! the committed settings are the ones in force on every node, whatever its flags say. Before any
//! settings are committed, every replica applies with the built-in defaults, so nodes started with
//! different flags can never diverge.
//!
//! Core: no I/O, no clock.

use serde::{Deserialize, Serialize};

use super::table::TableLimits;
use crate::registry::RegistryLimits;

/// The grid's apply-side limits, as committed (every field stored, unlike [`TableLimits`]'s layout
/// inside a format-1 snapshot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GridSettings {
    /// [`TableLimits::tasks_max`].
    pub tasks_max: usize,
    /// [`TableLimits::input_bytes_max`].
    pub input_bytes_max: usize,
    /// [`TableLimits::result_bytes_max`].
    pub result_bytes_max: usize,
    /// [`TableLimits::error_bytes_max`].
    pub error_bytes_max: usize,
    /// [`TableLimits::attempts_max`].
    pub attempts_max: u32,
    /// [`TableLimits::batch_max`].
    pub batch_max: usize,
    /// [`TableLimits::history_max`].
    pub history_max: usize,
    /// [`TableLimits::history_bytes_max`].
    pub history_bytes_max: usize,
    /// [`TableLimits::pending_input_bytes_max`].
    pub pending_input_bytes_max: usize,
}

impl From<TableLimits> for GridSettings {
    fn from(limits: TableLimits) -> Self {
        GridSettings {
            tasks_max: limits.tasks_max,
            input_bytes_max: limits.input_bytes_max,
            result_bytes_max: limits.result_bytes_max,
            error_bytes_max: limits.error_bytes_max,
            attempts_max: limits.attempts_max,
            batch_max: limits.batch_max,
            history_max: limits.history_max,
            history_bytes_max: limits.history_bytes_max,
            pending_input_bytes_max: limits.pending_input_bytes_max,
        }
    }
}

impl From<GridSettings> for TableLimits {
    fn from(settings: GridSettings) -> Self {
        TableLimits {
            tasks_max: settings.tasks_max,
            input_bytes_max: settings.input_bytes_max,
            result_bytes_max: settings.result_bytes_max,
            error_bytes_max: settings.error_bytes_max,
            attempts_max: settings.attempts_max,
            batch_max: settings.batch_max,
            history_max: settings.history_max,
            history_bytes_max: settings.history_bytes_max,
            pending_input_bytes_max: settings.pending_input_bytes_max,
        }
    }
}

/// The registry's apply-side limits, as committed (every field stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrySettings {
    /// [`RegistryLimits::data_bytes_max`].
    pub data_bytes_max: usize,
    /// [`RegistryLimits::znodes_max`].
    pub znodes_max: usize,
    /// [`RegistryLimits::sessions_max`].
    pub sessions_max: usize,
    /// [`RegistryLimits::multi_ops_max`].
    pub multi_ops_max: usize,
    /// [`RegistryLimits::session_timeout_ms_min`].
    pub session_timeout_ms_min: u64,
    /// [`RegistryLimits::session_timeout_ms_max`].
    pub session_timeout_ms_max: u64,
    /// [`RegistryLimits::data_bytes_total_max`].
    pub data_bytes_total_max: usize,
}

impl From<RegistryLimits> for RegistrySettings {
    fn from(limits: RegistryLimits) -> Self {
        RegistrySettings {
            data_bytes_max: limits.data_bytes_max,
            znodes_max: limits.znodes_max,
            sessions_max: limits.sessions_max,
            multi_ops_max: limits.multi_ops_max,
            session_timeout_ms_min: limits.session_timeout_ms_min,
            session_timeout_ms_max: limits.session_timeout_ms_max,
            data_bytes_total_max: limits.data_bytes_total_max,
        }
    }
}

impl From<RegistrySettings> for RegistryLimits {
    fn from(settings: RegistrySettings) -> Self {
        RegistryLimits {
            data_bytes_max: settings.data_bytes_max,
            znodes_max: settings.znodes_max,
            sessions_max: settings.sessions_max,
            multi_ops_max: settings.multi_ops_max,
            session_timeout_ms_min: settings.session_timeout_ms_min,
            session_timeout_ms_max: settings.session_timeout_ms_max,
            data_bytes_total_max: settings.data_bytes_total_max,
        }
    }
}

/// Every limit the apply step enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSettings {
    /// The registry's limits.
    pub registry: RegistrySettings,
    /// The task table's limits.
    pub grid: GridSettings,
}

impl ClusterSettings {
    /// Settings from a node's configured limits.
    pub fn new(registry: RegistryLimits, grid: TableLimits) -> ClusterSettings {
        ClusterSettings { registry: registry.into(), grid: grid.into() }
    }
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings::new(RegistryLimits::default(), TableLimits::default())
    }
}
