//! `hvlab schema [--out DIR] [--check]`: writes the JSON Schemas of lab, payload, scenario
//! and known-issues files, or checks that the checked-in ones are current.

use std::path::Path;

use lab_config::schema::{SchemaKind, schema_text};

use crate::cli::SchemaArgs;
use crate::error::CliError;
use crate::exit;

/// Runs `hvlab schema`.
pub fn run(root: &Path, args: &SchemaArgs) -> Result<u8, CliError> {
    let dir = args.out.clone().unwrap_or_else(|| root.join("schemas"));
    if args.check {
        let mut stale = Vec::new();
        for kind in SchemaKind::ALL {
            let path = dir.join(kind.file_name());
            let current = std::fs::read_to_string(&path).unwrap_or_default();
            if current != schema_text(kind) {
                stale.push(path.display().to_string());
            }
        }
        if stale.is_empty() {
            println!(
                "ok: {} schemas in {} are current",
                SchemaKind::ALL.len(),
                dir.display()
            );
            return Ok(exit::SUCCESS);
        }
        eprintln!("error: out of date or missing: {}", stale.join(", "));
        eprintln!("  = help: run `hvlab schema` to regenerate them");
        return Ok(exit::TEST_FAILURES);
    }
    std::fs::create_dir_all(&dir).map_err(|source| CliError::Io {
        action: format!("create `{}`", dir.display()),
        source,
    })?;
    for kind in SchemaKind::ALL {
        let path = dir.join(kind.file_name());
        std::fs::write(&path, schema_text(kind)).map_err(|source| CliError::Io {
            action: format!("write `{}`", path.display()),
            source,
        })?;
    }
    println!(
        "wrote {} schemas to {}",
        SchemaKind::ALL.len(),
        dir.display()
    );
    Ok(exit::SUCCESS)
}
