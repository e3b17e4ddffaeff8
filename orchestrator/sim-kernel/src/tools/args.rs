//! A small `--flag value` argument parser for the sim tools: unknown flags, missing or
//! malformed values are usage errors (exit code 2) with a message naming the flag.

use std::time::Duration;

/// Parsed `--name value` pairs and bare `--switch`es, in order.
#[derive(Debug, Default)]
pub(crate) struct Args {
    pairs: Vec<(String, Option<String>)>,
}

impl Args {
    /// Parses `args`; `switches` are flags without a value, `valued` take one.
    pub(crate) fn parse(
        args: &[String],
        valued: &[&str],
        switches: &[&str],
    ) -> Result<Args, String> {
        let mut pairs = Vec::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let Some(name) = a.strip_prefix("--") else {
                return Err(format!("unexpected argument {a:?}"));
            };
            let (name, inline) = match name.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (name, None),
            };
            if switches.contains(&name) {
                if inline.is_some() {
                    return Err(format!("--{name} takes no value"));
                }
                pairs.push((name.to_string(), None));
            } else if valued.contains(&name) {
                let v = match inline {
                    Some(v) => v,
                    None => it
                        .next()
                        .cloned()
                        .ok_or_else(|| format!("--{name} needs a value"))?,
                };
                if pairs.iter().any(|(n, _)| n == name) {
                    return Err(format!("--{name} given twice"));
                }
                pairs.push((name.to_string(), Some(v)));
            } else {
                return Err(format!("unknown option --{name}"));
            }
        }
        Ok(Args { pairs })
    }

    pub(crate) fn flag(&self, name: &str) -> bool {
        self.pairs.iter().any(|(n, _)| n == name)
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
    }

    pub(crate) fn required(&self, name: &str) -> Result<&str, String> {
        self.get(name)
            .ok_or_else(|| format!("--{name} is required"))
    }

    /// An integer in `min..=max`, or `default` when absent.
    pub(crate) fn int(&self, name: &str, default: u64, min: u64, max: u64) -> Result<u64, String> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => {
                let n: u64 = v
                    .parse()
                    .map_err(|_| format!("--{name}: {v:?} is not a number"))?;
                if n < min || n > max {
                    return Err(format!("--{name}: {n} is out of range {min}..={max}"));
                }
                Ok(n)
            }
        }
    }

    /// A humantime duration (`5s`, `250ms`), or `default` when absent.
    pub(crate) fn duration(
        &self,
        name: &str,
        default: Option<Duration>,
    ) -> Result<Option<Duration>, String> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => humantime::parse_duration(v)
                .map(Some)
                .map_err(|e| format!("--{name}: {v:?} is not a duration ({e})")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn parses_values_switches_and_inline_values() {
        let a = Args::parse(
            &s(&["--threads", "4", "--helpers", "--duration=250ms"]),
            &["threads", "duration"],
            &["helpers"],
        )
        .unwrap();
        assert_eq!(a.int("threads", 1, 1, 8), Ok(4));
        assert!(a.flag("helpers"));
        assert_eq!(
            a.duration("duration", None),
            Ok(Some(Duration::from_millis(250)))
        );
    }

    #[test]
    fn reports_what_is_wrong() {
        let v = &["threads", "duration"];
        let cases: [(&[&str], &str); 5] = [
            (&["--bogus"], "unknown option --bogus"),
            (&["--threads"], "--threads needs a value"),
            (&["stray"], "unexpected argument \"stray\""),
            (
                &["--threads", "1", "--threads", "2"],
                "--threads given twice",
            ),
            (&["--helpers=1"], "--helpers takes no value"),
        ];
        for (args, want) in cases {
            assert_eq!(Args::parse(&s(args), v, &["helpers"]).unwrap_err(), want);
        }
        let a = Args::parse(&s(&["--threads", "x", "--duration", "5 parsecs"]), v, &[]).unwrap();
        assert_eq!(
            a.int("threads", 1, 1, 8).unwrap_err(),
            "--threads: \"x\" is not a number"
        );
        assert!(
            a.duration("duration", None)
                .unwrap_err()
                .starts_with("--duration: \"5 parsecs\" is not a duration")
        );
        let a = Args::parse(&s(&["--threads", "99"]), v, &[]).unwrap();
        assert_eq!(
            a.int("threads", 1, 1, 8).unwrap_err(),
            "--threads: 99 is out of range 1..=8"
        );
    }
}
