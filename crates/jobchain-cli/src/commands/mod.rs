//! The operator commands: one file per group.

pub mod enqueue;
pub mod flow;
pub mod jobs;
pub mod periodic;
pub mod queue;
pub mod serve;
pub mod status;
pub mod workflow;
