//! An executable, concurrent model of the eBPF-for-Windows custom-map runtime.
