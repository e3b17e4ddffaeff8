//! The process environment hvlab reads, resolved once before a command starts (uv's
//! settings value) and handed down; the libraries take these values as parameters and
//! never read the environment themselves. Integration tests set the variables on the
//! child process, so each test keeps its own sim root.

use std::ffi::OsString;
use std::path::PathBuf;

/// What hvlab takes from its environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvSettings {
    /// What the lab backends take: `HOME` (where `.ssh/known_hosts` lives for Hyper-V hosts
    /// reached over SSH) and `HVLAB_SIM_ROOT` (the simulated lab's state directory; a
    /// per-user temp folder when it is not set).
    pub lab: lab_backends::Settings,
    /// `NO_COLOR` set to anything non-empty (no-color.org): no ANSI colours.
    pub no_color: bool,
}

impl EnvSettings {
    /// Reads the process environment.
    pub fn from_env() -> Self {
        Self::from_vars(|name| std::env::var_os(name))
    }

    /// Resolves the settings from `var` (the environment, or a map in tests).
    pub fn from_vars(var: impl Fn(&str) -> Option<OsString>) -> Self {
        EnvSettings {
            lab: lab_backends::Settings {
                home: var("HOME").map(PathBuf::from),
                sim_root: var("HVLAB_SIM_ROOT")
                    .map_or_else(lab_backends::sim::default_root, Into::into),
            },
            no_color: var("NO_COLOR").is_some_and(|v| !v.is_empty()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(vars: &[(&str, &str)]) -> EnvSettings {
        EnvSettings::from_vars(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| OsString::from(v))
        })
    }

    #[test]
    fn variables_are_resolved_into_settings() {
        let s = from(&[
            ("HOME", "/home/u"),
            ("HVLAB_SIM_ROOT", "/tmp/sim"),
            ("NO_COLOR", "1"),
        ]);
        assert_eq!(s.lab.sim_root, PathBuf::from("/tmp/sim"));
        assert_eq!(
            s.lab.known_hosts(),
            PathBuf::from("/home/u/.ssh/known_hosts")
        );
        assert!(s.no_color);
    }

    #[test]
    fn unset_or_empty_variables_fall_back() {
        let s = from(&[("NO_COLOR", "")]);
        assert_eq!(s.lab.sim_root, lab_backends::sim::default_root());
        assert_eq!(s.lab.known_hosts(), PathBuf::from("known_hosts"));
        assert!(!s.no_color, "an empty NO_COLOR does not turn colours off");
    }
}
