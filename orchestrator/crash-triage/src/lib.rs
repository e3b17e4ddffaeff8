//! Windows kernel dumps: writing them for the simulated lab, triage, signatures and buckets.
