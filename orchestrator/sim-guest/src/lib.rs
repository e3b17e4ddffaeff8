//! The simulated guest: a Windows-shaped disk, sim-kernel, and the guest-agent server.
