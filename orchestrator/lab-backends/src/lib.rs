//! Hypervisor and Guest abstractions with the simulated-lab and Hyper-V backends.
//!
//! The runner talks to a lab through two traits: [`Hypervisor`] (one per lab host: VM
//! lifecycle, checkpoints, NMI) and [`Guest`] (one per running VM: exec, files, services,
//! configuration, events). Backends are a closed set, dispatched through the `Any*` enums
//! (youki's `AnyCgroupManager` pattern), so async trait methods need no boxing.
//! This crate never sees YAML: [`connect()`] builds a backend from the validated lab, [`facts`]
//! answers the runner's capacity and template questions, and the runner translates the rest
//! of a validated plan into the request types in [`model`].

pub mod connect;
pub mod error;
pub mod facts;
pub mod guest;
pub mod hyperv;
pub mod hypervisor;
pub mod model;
pub mod process;
pub mod sim;

pub use connect::{ConnectError, Settings, connect};
pub use error::{BackendError, Result};
pub use facts::{BackendFacts, TemplateFacts};
pub use guest::{AnyGuest, Guest};
pub use hypervisor::{AnyHypervisor, DEPLOYED_CHECKPOINT, Hypervisor};
pub use model::*;
