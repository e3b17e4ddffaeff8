//! Small value types shared by the wire formats: spans, human durations and sizes, secret
//! references, tool argument values and bugcheck codes. Each parses strictly and says why not.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

/// A position in a YAML source file (1-based line and column, byte range for snippets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
pub struct Loc {
    /// 1-based line number.
    pub line: u32,
    /// 1-based column (in characters).
    pub column: u32,
    /// Byte offset of the start of the node, when known.
    pub offset: Option<usize>,
    /// Length in bytes of the node's text, when known (0 for collections).
    pub len: usize,
}

impl Loc {
    /// A location that only knows its line and column.
    pub fn at(line: u32, column: u32) -> Self {
        Self {
            line,
            column,
            offset: None,
            len: 0,
        }
    }

    pub(crate) fn from_saphyr(l: &serde_saphyr::Location) -> Self {
        let span = l.span();
        Self {
            line: u32::try_from(l.line()).unwrap_or(u32::MAX),
            column: u32::try_from(l.column()).unwrap_or(u32::MAX),
            offset: span.byte_offset().and_then(|o| usize::try_from(o).ok()),
            len: span
                .byte_len()
                .and_then(|o| usize::try_from(o).ok())
                .unwrap_or(0),
        }
    }
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// A wire value together with where it was written. Deserializes through
/// `serde_saphyr::Spanned` and has the JSON schema of the inner type.
#[derive(Debug, Clone)]
pub(crate) struct Sp<T> {
    pub value: T,
    pub loc: Loc,
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Sp<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = serde_saphyr::Spanned::<T>::deserialize(d)?;
        Ok(Sp {
            value: s.value,
            loc: Loc::from_saphyr(&s.referenced),
        })
    }
}

impl<T: JsonSchema> JsonSchema for Sp<T> {
    fn inline_schema() -> bool {
        T::inline_schema()
    }
    fn schema_name() -> Cow<'static, str> {
        T::schema_name()
    }
    fn schema_id() -> Cow<'static, str> {
        T::schema_id()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        T::json_schema(generator)
    }
}

impl<T> std::ops::Deref for Sp<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

/// Deserializes a present key whose value may be empty (`deploy:` or `deploy: {}`) into
/// `Some(default)`, so that "the key is there" is not lost to YAML null.
pub(crate) fn present_or_empty<'de, D, T>(d: D) -> Result<Option<Sp<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    let s = serde_saphyr::Spanned::<Option<T>>::deserialize(d)?;
    Ok(Some(Sp {
        value: s.value.unwrap_or_default(),
        loc: Loc::from_saphyr(&s.referenced),
    }))
}

/// A human duration such as `90s`, `5m`, `250ms` or `1h 30m` (humantime syntax).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration with a unit, e.g. `90s`, `5m`, `250ms`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<HumanDuration, E> {
                parse_duration(v).map(HumanDuration).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<HumanDuration, E> {
                Err(E::custom(format!(
                    "duration `{v}` has no unit: write e.g. `{v}s` or `{v}ms`"
                )))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<HumanDuration, E> {
                Err(E::custom(format!(
                    "invalid duration `{v}`: durations are positive and need a unit, e.g. `30s`"
                )))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<HumanDuration, E> {
                Err(E::custom(format!(
                    "duration `{v}` has no unit: write e.g. `1500ms`"
                )))
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for HumanDuration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "A human duration: a number and a unit (ms, s, m, h), e.g. `90s`, `5m`, `250ms`, `1h 30m`.",
            "pattern": "^\\s*[0-9]+\\s*[a-zA-Z]+(\\s*[0-9]+\\s*[a-zA-Z]+)*\\s*$"
        })
    }
}

/// A duration or size written in a config file that does not parse. The message names the
/// bad text and says what to write; serde and the validator put it at its file:line:col.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum ValueError {
    // humantime's reason stands inside the sentence, before the hint, so it is not a source.
    #[error(
        "invalid duration `{text}` ({why}): expected a number and a unit, e.g. `90s`, `5m`, `250ms`"
    )]
    Duration {
        text: String,
        why: humantime::DurationError,
    },
    #[error(
        "invalid size `{0}`: expected a number and a unit (B, KiB, MiB, GiB, KB, MB, GB), e.g. `4GiB`"
    )]
    Size(String),
    #[error("size `{text}` has no unit: write e.g. `{n}MiB`")]
    SizeWithoutUnit { text: String, n: u64 },
    #[error("size `{0}` is too large")]
    SizeTooLarge(String),
}

/// Parses a humantime duration with a message that names the bad text.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, ValueError> {
    humantime::parse_duration(text.trim()).map_err(|why| ValueError::Duration {
        text: text.to_owned(),
        why,
    })
}

/// Formats a duration the way the YAML files write it (`5s`, `1m 30s`).
pub fn format_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// A memory size such as `4GiB`, `512MiB` or `2048MB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ByteSize(pub u64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size with a unit, e.g. `4GiB` or `512MiB`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                parse_size(v).map(ByteSize).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Err(E::custom(format!(
                    "size `{v}` has no unit: write e.g. `{v}MiB`"
                )))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                Err(E::custom(format!(
                    "invalid size `{v}`: sizes are positive and need a unit, e.g. `4GiB`"
                )))
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for ByteSize {
    fn schema_name() -> Cow<'static, str> {
        "ByteSize".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "A size with a unit: B, KiB, MiB, GiB, KB, MB, GB, e.g. `4GiB`.",
            "pattern": "^\\s*[0-9]+\\s*([KMG]i?B|B)\\s*$"
        })
    }
}

fn parse_size(text: &str) -> Result<u64, ValueError> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || ValueError::Size(text.to_owned());
    let n: u64 = num.parse().map_err(|_| bad())?;
    let mult: u64 = match unit.trim() {
        "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "" => {
            return Err(ValueError::SizeWithoutUnit {
                text: text.to_owned(),
                n,
            });
        }
        _ => return Err(bad()),
    };
    n.checked_mul(mult)
        .ok_or_else(|| ValueError::SizeTooLarge(text.to_owned()))
}

/// Where a secret comes from. Secrets are never written in YAML: a literal string is
/// rejected with a message that says how to reference one instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SecretRefWire {
    Env(String),
    File(String),
}

impl<'de> Deserialize<'de> for SecretRefWire {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = SecretRefWire;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a secret reference `{env: VAR}` or `{file: path}`")
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<SecretRefWire, E> {
                Err(E::custom(
                    "inline secrets are not allowed: reference the secret with `{env: VAR_NAME}` or `{file: path/to/secret}`",
                ))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<SecretRefWire, E> {
                self.visit_str("")
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<SecretRefWire, E> {
                self.visit_str("")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<SecretRefWire, A::Error> {
                let mut out = None;
                while let Some(key) = m.next_key::<String>()? {
                    let value: String = m.next_value()?;
                    let item = match key.as_str() {
                        "env" => SecretRefWire::Env(value),
                        "file" => SecretRefWire::File(value),
                        other => {
                            return Err(de::Error::custom(format!(
                                "unknown secret source `{other}`, expected `env` or `file`"
                            )));
                        }
                    };
                    if out.replace(item).is_some() {
                        return Err(de::Error::custom(
                            "a secret reference has exactly one of `env` or `file`",
                        ));
                    }
                }
                out.ok_or_else(|| {
                    de::Error::custom(
                        "empty secret reference: write `{env: VAR_NAME}` or `{file: path}`",
                    )
                })
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for SecretRefWire {
    fn schema_name() -> Cow<'static, str> {
        "SecretRef".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A secret by reference: an environment variable or a file. Never the secret itself.",
            "oneOf": [
                {"type": "object", "properties": {"env": {"type": "string"}}, "required": ["env"], "additionalProperties": false},
                {"type": "object", "properties": {"file": {"type": "string"}}, "required": ["file"], "additionalProperties": false}
            ]
        })
    }
}

/// A scalar written as a tool argument value in a scenario. Its type is checked against the
/// tool's declaration during validation.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ArgValueWire {
    Int(i64),
    Bool(bool),
    Str(String),
}

impl fmt::Display for ArgValueWire {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Int(i) => write!(f, "{i}"),
            Self::Bool(b) => write!(f, "{b}"),
            Self::Str(s) => write!(f, "`{s}`"),
        }
    }
}

impl<'de> Deserialize<'de> for ArgValueWire {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ArgValueWire;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a scalar argument value (integer, boolean, string or duration)")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<ArgValueWire, E> {
                Ok(ArgValueWire::Bool(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ArgValueWire, E> {
                Ok(ArgValueWire::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ArgValueWire, E> {
                i64::try_from(v)
                    .map(ArgValueWire::Int)
                    .map_err(|_| E::custom(format!("integer {v} is too large")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<ArgValueWire, E> {
                Err(E::custom(format!(
                    "argument value {v} is fractional: tool arguments are integers, booleans, strings or durations"
                )))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ArgValueWire, E> {
                Ok(ArgValueWire::Str(v.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for ArgValueWire {
    fn schema_name() -> Cow<'static, str> {
        "ArgValue".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A tool argument value: integer, boolean, string, or duration string.",
            "type": ["integer", "boolean", "string"]
        })
    }
}

/// A bugcheck code, written as a YAML integer (`0x50`) or a string (`"0x50"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BugcheckCodeWire(pub u32);

impl<'de> Deserialize<'de> for BugcheckCodeWire {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = BugcheckCodeWire;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a bugcheck code such as 0x50")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<BugcheckCodeWire, E> {
                u32::try_from(v)
                    .map(BugcheckCodeWire)
                    .map_err(|_| E::custom(format!("bugcheck code {v:#x} does not fit in 32 bits")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<BugcheckCodeWire, E> {
                Err(E::custom(format!(
                    "invalid bugcheck code {v}: codes are positive, e.g. 0x50"
                )))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<BugcheckCodeWire, E> {
                let t = v.trim();
                let parsed = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
                    Some(hex) => u32::from_str_radix(hex, 16).ok(),
                    None => t.parse().ok(),
                };
                parsed.map(BugcheckCodeWire).ok_or_else(|| {
                    E::custom(format!(
                        "invalid bugcheck code `{v}`: expected a number such as 0x50"
                    ))
                })
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for BugcheckCodeWire {
    fn schema_name() -> Cow<'static, str> {
        "BugcheckCode".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A bugcheck code, e.g. 0x50 (PAGE_FAULT_IN_NONPAGED_AREA).",
            "type": ["integer", "string"]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units_only() {
        assert_eq!(parse_size("4GiB"), Ok(4 << 30));
        assert_eq!(parse_size(" 512 MiB "), Ok(512 << 20));
        assert_eq!(parse_size("2048MB"), Ok(2_048_000_000));
        assert!(parse_size("4").unwrap_err().to_string().contains("no unit"));
        assert!(
            parse_size("4 parsecs")
                .unwrap_err()
                .to_string()
                .contains("invalid size")
        );
        assert!(
            parse_size("99999999999999GiB")
                .unwrap_err()
                .to_string()
                .contains("too large")
        );
    }

    #[test]
    fn durations_name_the_bad_text() {
        assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
        assert!(
            parse_duration("soon")
                .unwrap_err()
                .to_string()
                .contains("`soon`")
        );
    }
}
