//! The Windows guest vocabulary hvlab speaks everywhere: service start types and states,
//! CrashControl and dump kinds, Driver Verifier settings, System event records, and the
//! guest-agent protocol (with the simulated guest's launch contract).
//!
//! What belongs here: a fact about a Windows guest that more than one crate names (the
//! config, the runner, a backend, the simulated guest or kernel, crash triage), in the
//! spelling Windows and the wire use. What does not: anything one crate alone needs, and
//! behaviour (this crate has no I/O beyond framing bytes on a `Read`/`Write`).
//!
//! ```text
//!   lab-config ─┐
//!   lab-runner ─┤                       ┌─ sim-guest ── sim-kernel
//!  lab-backends ┴─► win-vocab ◄─────────┤
//!                                       └─ crash-triage
//! ```

pub mod crash;
pub mod event;
pub mod protocol;
pub mod service;
pub mod verifier;

pub use crash::{CrashControl, DumpKind};
pub use event::{EventBugcheck, EventRecord};
pub use service::{ServiceState, StartType};
pub use verifier::Verifier;
