//! Background services of a worker, one per file: the [`rescuer`] (expired leases),
//! the [`scheduler`] (due delayed and retrying jobs), the [`cleaner`] (retention) and
//! [`periodic`] (periodic jobs).
//! Each runs until its worker's shutdown.

pub(crate) mod cleaner;
pub(crate) mod periodic;
pub(crate) mod rescuer;
pub(crate) mod scheduler;
