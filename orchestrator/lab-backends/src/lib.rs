//! Hypervisor and Guest abstractions with the simulated-lab and Hyper-V backends.
