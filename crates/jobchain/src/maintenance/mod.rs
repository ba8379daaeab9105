//! Background services of a worker, one per file: the [`rescuer`] (expired leases),
//! the [`scheduler`] (due delayed and retrying jobs) and the [`cleaner`] (retention).
//! Each runs until its worker's shutdown.

pub(crate) mod cleaner;
pub(crate) mod rescuer;
pub(crate) mod scheduler;
