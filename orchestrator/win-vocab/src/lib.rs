//! The Windows guest vocabulary hvlab speaks everywhere: service start types and states,
//! CrashControl and dump kinds, Driver Verifier settings, System event records, bugchecks
//! (the one table of codes and the record of a stop), and the guest-agent protocol (with
//! the simulated guest's launch contract).
//!
//! What belongs here: a fact about a Windows guest that more than one crate names (the
//! config, the runner, a backend, the simulated guest or kernel, crash triage), in the
//! spelling Windows and the wire use. What does not: anything one crate alone needs, and
//! behaviour (this crate has no I/O beyond framing bytes on a `Read`/`Write`).
//!
//! ```text
//!   lab-config ─┐                       ┌─ sim-guest
//!   lab-runner ─┤                       ├─ sim-kernel
//!  lab-backends ┴─► win-vocab ◄─────────┤
//!                                       └─ crash-triage
//! ```

pub mod bugcheck;
pub mod crash;
pub mod event;
pub mod protocol;
pub mod service;
pub mod verifier;

pub use bugcheck::Bugcheck;
pub use crash::{CrashControl, DumpKind};
pub use event::EventRecord;
pub use service::{ServiceState, StartType};
pub use verifier::Verifier;
