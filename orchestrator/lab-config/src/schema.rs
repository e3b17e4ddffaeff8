//! JSON Schemas of the configuration file kinds, generated from the wire types. They are checked in
//! under `schemas/` (see `hvlab schema`) so editors can complete and check YAML files.

use schemars::generate::SchemaSettings;
use serde_json::{Value, json};

use crate::wire::lab::{HyperVLabWire, SimLabWire};
use crate::wire::payload::PayloadWire;
use crate::wire::scenario::ScenarioWire;

/// The three kinds of configuration file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaKind {
    /// `vm-configs/*.yaml`.
    Lab,
    /// `driver-payloads/*.yaml`.
    Payload,
    /// `scenarios/*.yaml`.
    Scenario,
    /// `known-issues.yaml`.
    KnownIssues,
}

impl SchemaKind {
    /// All kinds.
    pub const ALL: [SchemaKind; 4] = [
        SchemaKind::Lab,
        SchemaKind::Payload,
        SchemaKind::Scenario,
        SchemaKind::KnownIssues,
    ];

    /// File name under `schemas/`.
    pub fn file_name(self) -> &'static str {
        match self {
            SchemaKind::Lab => "lab.schema.json",
            SchemaKind::Payload => "payload.schema.json",
            SchemaKind::Scenario => "scenario.schema.json",
            SchemaKind::KnownIssues => "known-issues.schema.json",
        }
    }
}

fn settings() -> SchemaSettings {
    SchemaSettings::draft2020_12()
}

/// The schema of one kind.
pub fn schema(kind: SchemaKind) -> Value {
    let mut generator = settings().into_generator();
    let mut root = match kind {
        SchemaKind::Payload => generator.into_root_schema_for::<PayloadWire>().to_value(),
        SchemaKind::Scenario => generator.into_root_schema_for::<ScenarioWire>().to_value(),
        SchemaKind::KnownIssues => generator
            .into_root_schema_for::<crate::known::KnownIssuesWire>()
            .to_value(),
        SchemaKind::Lab => {
            let sim = generator.subschema_for::<SimLabWire>().to_value();
            let hyperv = generator.subschema_for::<HyperVLabWire>().to_value();
            let mut defs = serde_json::Map::new();
            for (k, v) in generator.take_definitions(true) {
                defs.insert(k, v);
            }
            // `kind` selects the variant: pin it so editors offer the right fields.
            for (def, kind) in [("SimLab", "sim"), ("HyperVLab", "hyperv")] {
                if let Some(props) = defs
                    .get_mut(def)
                    .and_then(|d| d.get_mut("properties"))
                    .and_then(Value::as_object_mut)
                {
                    props.insert("kind".into(), json!({"const": kind, "description": format!("Always `{kind}` for this kind of lab.")}));
                }
            }
            json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "title": "hvlab lab file",
                "description": "A lab: `kind: sim` (the embedded simulated lab) or `kind: hyperv` (Hyper-V hosts).",
                "oneOf": [sim, hyperv],
                "$defs": defs,
            })
        }
    };
    if let Some(obj) = root.as_object_mut() {
        obj.insert(
            "$id".into(),
            json!(format!(
                "https://hvlab.invalid/schemas/{}",
                kind.file_name()
            )),
        );
    }
    root
}

/// The schema text as written to disk (pretty JSON, trailing newline).
pub fn schema_text(kind: SchemaKind) -> String {
    let mut s = serde_json::to_string_pretty(&schema(kind)).unwrap_or_default();
    s.push('\n');
    s
}
