//! Durations in event JSON as seconds (a float, e.g. `0.661933`), so `jq`, Python and CI
//! tools can compare and sum them; older `events.jsonl` files wrote humantime text
//! (`"661ms 933us"`), which still reads back.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Wire {
        Secs(f64),
        Text(String),
    }
    match Wire::deserialize(d)? {
        Wire::Secs(s) => Duration::try_from_secs_f64(s).map_err(serde::de::Error::custom),
        Wire::Text(t) => humantime::parse_duration(&t).map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct T {
        #[serde(with = "super")]
        d: Duration,
    }

    #[test]
    fn writes_seconds_and_reads_seconds_or_humantime_text() {
        let t = T {
            d: Duration::from_millis(1500),
        };
        assert_eq!(serde_json::to_string(&t).unwrap(), r#"{"d":1.5}"#);
        assert_eq!(serde_json::from_str::<T>(r#"{"d":1.5}"#).unwrap(), t);
        assert_eq!(serde_json::from_str::<T>(r#"{"d":"1s 500ms"}"#).unwrap(), t);
        assert!(serde_json::from_str::<T>(r#"{"d":-1}"#).is_err());
    }
}
