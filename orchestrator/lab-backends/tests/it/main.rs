//! lab-backends integration tests (one binary, one module per backend).

mod hyperv;
