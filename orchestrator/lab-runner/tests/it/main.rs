//! lab-runner integration tests (one binary, one module per area).

mod hosts;
mod hyperv;
mod support;
