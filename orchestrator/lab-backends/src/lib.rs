//! Hypervisor and Guest abstractions with the simulated-lab and Hyper-V backends.
//!
//! The runner talks to a lab through two traits: [`Hypervisor`] (one per lab host: VM
//! lifecycle, checkpoints, NMI) and [`Guest`] (one per running VM: exec, files, services,
//! configuration, events). Backends are a closed set, dispatched through the `Any*` enums
//! (youki's `AnyCgroupManager` pattern), so async trait methods need no boxing.
//! This crate never sees YAML: the runner translates a validated plan into the request types
//! in [`model`].

pub mod error;
pub mod guest;
pub mod hyperv;
pub mod hypervisor;
pub mod model;
pub mod process;
pub mod sim;

pub use error::{BackendError, Result};
pub use guest::{AnyGuest, Guest};
pub use hypervisor::{AnyHypervisor, DEPLOYED_CHECKPOINT, Hypervisor};
pub use model::*;
