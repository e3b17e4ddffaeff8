//! lab-backends integration tests (one binary, one module per backend, plus `wintool`: the
//! Windows guest tools the Hyper-V payload deploys).

mod hyperv;
mod wintool;
