//! Renders a tool invocation (tool + step arguments + seed) into an argv. Validation renders
//! every `run` step once, so a template that cannot render is a config error, not a runtime one.

use std::collections::BTreeMap;

use super::payload::{ArgKind, ArgValue, DurationUnit, Tool};

/// Per-invocation values of the builtin placeholders.
#[derive(Debug, Clone, Copy)]
pub struct InvocationContext<'a> {
    /// `{seed}`: the iteration's seed.
    pub seed: u64,
    /// `{iteration}`: 0-based iteration.
    pub iteration: u32,
    /// `{vm}`: VM (template) name.
    pub vm: &'a str,
    /// `{scenario}`: scenario name.
    pub scenario: &'a str,
}

/// Names usable in every command template besides the tool's arguments.
pub const BUILTIN_PLACEHOLDERS: &[&str] = &["seed", "iteration", "vm", "scenario", "junit"];

/// Why an invocation cannot be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// `{name}` is neither an argument nor a builtin.
    #[error("render tool `{tool}`: unknown placeholder `{{{name}}}` in `{element}`")]
    UnknownPlaceholder {
        /// Tool.
        tool: String,
        /// Placeholder name.
        name: String,
        /// Template element.
        element: String,
    },
    /// A `{` without `}`.
    #[error(
        "render tool `{tool}`: unclosed `{{` in `{element}` (write `{{{{` for a literal brace)"
    )]
    Unclosed {
        /// Tool.
        tool: String,
        /// Template element.
        element: String,
    },
    /// `{junit}` used but the tool declares no JUnit file.
    #[error("render tool `{tool}`: `{{junit}}` is used but `result.junit` is not set")]
    NoJunit {
        /// Tool.
        tool: String,
    },
    /// A required argument has no value.
    #[error("render tool `{tool}`: argument `{name}` is required")]
    Missing {
        /// Tool.
        tool: String,
        /// Argument.
        name: String,
    },
    /// An optional, unset argument is used inside a longer element, where it cannot be dropped.
    #[error(
        "render tool `{tool}`: argument `{name}` has no value and no default, but `{element}` needs it"
    )]
    Unset {
        /// Tool.
        tool: String,
        /// Argument.
        name: String,
        /// Template element.
        element: String,
    },
    /// A duration cannot be written in the argument's unit.
    #[error("render tool `{tool}`: argument `{name}` = {value} is not a whole number of {unit}")]
    NotWhole {
        /// Tool.
        tool: String,
        /// Argument.
        name: String,
        /// The value.
        value: String,
        /// Unit name.
        unit: &'static str,
    },
}

enum Piece<'a> {
    Text(String),
    Var(&'a str),
}

/// Splits a template element into text and `{var}` pieces (`{{` / `}}` are literal braces).
fn pieces<'a>(tool: &str, element: &'a str) -> Result<Vec<Piece<'a>>, RenderError> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut rest = element;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("{{") {
            text.push('{');
            rest = r;
        } else if let Some(r) = rest.strip_prefix("}}") {
            text.push('}');
            rest = r;
        } else if let Some(r) = rest.strip_prefix('{') {
            let end = r.find('}').ok_or_else(|| RenderError::Unclosed {
                tool: tool.to_owned(),
                element: element.to_owned(),
            })?;
            if !text.is_empty() {
                out.push(Piece::Text(std::mem::take(&mut text)));
            }
            out.push(Piece::Var(&r[..end]));
            rest = &r[end + 1..];
        } else {
            let c = rest.chars().next().unwrap_or(' ');
            text.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    if !text.is_empty() {
        out.push(Piece::Text(text));
    }
    Ok(out)
}

/// The placeholder names used in a template element (for validation messages).
pub(crate) fn placeholders(tool: &str, element: &str) -> Result<Vec<String>, RenderError> {
    Ok(pieces(tool, element)?
        .into_iter()
        .filter_map(|p| match p {
            Piece::Var(v) => Some(v.to_owned()),
            Piece::Text(_) => None,
        })
        .collect())
}

impl Tool {
    /// The value of an argument: given, else its default, else `None`.
    fn value<'a>(
        &'a self,
        args: &'a BTreeMap<String, ArgValue>,
        name: &str,
    ) -> Option<&'a ArgValue> {
        args.get(name)
            .or_else(|| self.argument(name).and_then(|a| a.default.as_ref()))
    }

    fn format_value(&self, name: &str, v: &ArgValue) -> Result<String, RenderError> {
        let unit = match self.argument(name).map(|a| &a.kind) {
            Some(ArgKind::Duration { unit, .. }) => *unit,
            _ => DurationUnit::Human,
        };
        match (v, unit) {
            (ArgValue::Duration(d), DurationUnit::Ms) => Ok(d.as_millis().to_string()),
            (ArgValue::Duration(d), DurationUnit::S | DurationUnit::M) => {
                let (per, unit_name) = if unit == DurationUnit::S {
                    (1_000u128, "seconds")
                } else {
                    (60_000, "minutes")
                };
                let ms = d.as_millis();
                if ms % per != 0 {
                    return Err(RenderError::NotWhole {
                        tool: self.name.clone(),
                        name: name.to_owned(),
                        value: v.to_string(),
                        unit: unit_name,
                    });
                }
                Ok((ms / per).to_string())
            }
            _ => Ok(v.to_string()),
        }
    }

    /// Renders the argv: program, the `command` template, then flagged arguments in
    /// declaration order. `args` are the step's values; defaults fill the rest.
    pub fn render(
        &self,
        args: &BTreeMap<String, ArgValue>,
        ctx: &InvocationContext<'_>,
    ) -> Result<Vec<String>, RenderError> {
        let mut argv = vec![self.program.clone()];
        for a in &self.arguments {
            if a.required && self.value(args, &a.name).is_none() {
                return Err(RenderError::Missing {
                    tool: self.name.clone(),
                    name: a.name.clone(),
                });
            }
        }
        for element in &self.command {
            let ps = pieces(&self.name, element)?;
            // A lone placeholder of an unset optional argument drops the whole element.
            if let [Piece::Var(v)] = ps.as_slice()
                && self.argument(v).is_some()
                && self.value(args, v).is_none()
            {
                continue;
            }
            let mut out = String::new();
            for p in ps {
                match p {
                    Piece::Text(t) => out.push_str(&t),
                    Piece::Var(v) => out.push_str(&self.builtin_or_arg(v, args, ctx, element)?),
                }
            }
            argv.push(out);
        }
        for a in &self.arguments {
            let (Some(flag), Some(v)) = (&a.flag, self.value(args, &a.name)) else {
                continue;
            };
            let joined = flag.ends_with('=') || flag.ends_with(':');
            match v {
                // `-er=true` style switches take the value; plain switches appear or not.
                ArgValue::Bool(b) if joined => argv.push(format!("{flag}{b}")),
                ArgValue::Bool(true) => argv.push(flag.clone()),
                ArgValue::Bool(false) => {}
                other => {
                    let text = self.format_value(&a.name, other)?;
                    if joined {
                        argv.push(format!("{flag}{text}"));
                    } else {
                        argv.push(flag.clone());
                        argv.push(text);
                    }
                }
            }
        }
        Ok(argv)
    }

    fn builtin_or_arg(
        &self,
        name: &str,
        args: &BTreeMap<String, ArgValue>,
        ctx: &InvocationContext<'_>,
        element: &str,
    ) -> Result<String, RenderError> {
        if self.argument(name).is_some() {
            return match self.value(args, name) {
                Some(v) => self.format_value(name, v),
                None => Err(RenderError::Unset {
                    tool: self.name.clone(),
                    name: name.to_owned(),
                    element: element.to_owned(),
                }),
            };
        }
        match name {
            "seed" => Ok(ctx.seed.to_string()),
            "iteration" => Ok(ctx.iteration.to_string()),
            "vm" => Ok(ctx.vm.to_owned()),
            "scenario" => Ok(ctx.scenario.to_owned()),
            "junit" => self
                .result
                .junit
                .clone()
                .ok_or_else(|| RenderError::NoJunit {
                    tool: self.name.clone(),
                }),
            _ => Err(RenderError::UnknownPlaceholder {
                tool: self.name.clone(),
                name: name.to_owned(),
                element: element.to_owned(),
            }),
        }
    }
}

/// Expands the builtins of a raw `exec` command element.
pub(crate) fn expand_builtins(
    element: &str,
    ctx: &InvocationContext<'_>,
) -> Result<String, RenderError> {
    let mut out = String::new();
    for p in pieces("exec", element)? {
        match p {
            Piece::Text(t) => out.push_str(&t),
            Piece::Var("seed") => out.push_str(&ctx.seed.to_string()),
            Piece::Var("iteration") => out.push_str(&ctx.iteration.to_string()),
            Piece::Var("vm") => out.push_str(ctx.vm),
            Piece::Var("scenario") => out.push_str(ctx.scenario),
            Piece::Var(v) => {
                return Err(RenderError::UnknownPlaceholder {
                    tool: "exec".to_owned(),
                    name: v.to_owned(),
                    element: element.to_owned(),
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::model::Origin;
    use crate::model::payload::{ResultContract, ToolArg};

    /// Iteration `iteration` of scenario `s` on VM `vm`, run with `seed`.
    fn ctx(seed: u64, iteration: u32) -> InvocationContext<'static> {
        InvocationContext {
            seed,
            iteration,
            vm: "vm",
            scenario: "s",
        }
    }

    fn tool() -> Tool {
        let arg =
            |name: &str, kind: ArgKind, default: Option<ArgValue>, flag: Option<&str>| ToolArg {
                name: name.to_owned(),
                kind,
                default,
                required: false,
                flag: flag.map(str::to_owned),
            };
        Tool {
            name: "t".to_owned(),
            program: r"C:\t.exe".to_owned(),
            command: vec![
                "{op}".to_owned(),
                "--out={junit}".to_owned(),
                "{name}".to_owned(),
            ],
            arguments: vec![
                arg(
                    "op",
                    ArgKind::Enum {
                        values: vec!["run".into()],
                    },
                    Some(ArgValue::String("run".into())),
                    None,
                ),
                arg("name", ArgKind::String, None, None),
                arg(
                    "threads",
                    ArgKind::Int {
                        min: None,
                        max: None,
                    },
                    Some(ArgValue::Int(4)),
                    Some("--threads"),
                ),
                arg(
                    "helpers",
                    ArgKind::Bool,
                    Some(ArgValue::Bool(false)),
                    Some("--helpers"),
                ),
                arg(
                    "td",
                    ArgKind::Duration {
                        min: None,
                        max: None,
                        unit: DurationUnit::M,
                    },
                    Some(ArgValue::Duration(Duration::from_secs(120))),
                    Some("-td="),
                ),
                arg(
                    "seed_arg",
                    ArgKind::Int {
                        min: None,
                        max: None,
                    },
                    None,
                    Some("--never"),
                ),
            ],
            result: ResultContract {
                exit_codes: vec![0],
                counters: None,
                counter_names: vec![],
                junit: Some(r"C:\o.xml".into()),
            },
            timeout: None,
            origin: Origin {
                file: Arc::from(Path::new("p.yaml")),
                loc: Default::default(),
            },
        }
    }

    #[test]
    fn renders_defaults_flags_and_builtins() {
        let ctx = ctx(7, 0);
        let mut args = BTreeMap::new();
        args.insert("helpers".to_owned(), ArgValue::Bool(true));
        let argv = tool().render(&args, &ctx).unwrap();
        assert_eq!(
            argv,
            [
                r"C:\t.exe",
                "run",
                r"--out=C:\o.xml",
                "--threads",
                "4",
                "--helpers",
                "-td=2"
            ]
        );
    }

    #[test]
    fn rejects_fractional_minutes() {
        let ctx = ctx(7, 0);
        let mut args = BTreeMap::new();
        args.insert("td".to_owned(), ArgValue::Duration(Duration::from_secs(90)));
        let err = tool().render(&args, &ctx).unwrap_err();
        assert_eq!(
            err.to_string(),
            "render tool `t`: argument `td` = 1m 30s is not a whole number of minutes"
        );
    }

    #[test]
    fn exec_expands_builtins_only() {
        let ctx = ctx(42, 3);
        assert_eq!(
            expand_builtins("--seed={seed}/{iteration}{{x}}", &ctx).unwrap(),
            "--seed=42/3{x}"
        );
        assert!(expand_builtins("{nope}", &ctx).is_err());
    }
}
