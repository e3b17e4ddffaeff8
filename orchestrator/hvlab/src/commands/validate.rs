//! `hvlab validate [PATHS...]`: checks lab, payload and scenario files against each other
//! and prints every problem (exit 2) or a one-line summary (exit 0).

use std::io::Read;
use std::path::{Path, PathBuf};

use lab_config::{ValidateRequest, Workspace, validate};

use crate::cli::ValidateArgs;
use crate::error::CliError;
use crate::exit;

/// The kind of a configuration file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// `vm-configs/`.
    Lab,
    /// `driver-payloads/`.
    Payload,
    /// `scenarios/`.
    Scenario,
}

/// How much of a file `kind_of` reads to find its top-level keys.
const SNIFF_BYTES: u64 = 64 * 1024;

/// A file's kind: from its folder, then its name (`x.lab.yaml`, `x.payload.yaml`,
/// `x.scenario.yaml`), then its top-level keys.
pub fn kind_of(path: &Path) -> Option<FileKind> {
    let parent = path
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str())
        .unwrap_or("");
    match parent {
        "vm-configs" => return Some(FileKind::Lab),
        "driver-payloads" => return Some(FileKind::Payload),
        "scenarios" => return Some(FileKind::Scenario),
        _ => {}
    }
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    for (suffix, kind) in [
        ("lab", FileKind::Lab),
        ("payload", FileKind::Payload),
        ("scenario", FileKind::Scenario),
    ] {
        if name.ends_with(&format!(".{suffix}.yaml")) || name.ends_with(&format!(".{suffix}.yml")) {
            return Some(kind);
        }
    }
    // Sniff top-level keys from the head of the file only (callers checked it is regular).
    let mut head = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(SNIFF_BYTES).read_to_end(&mut head))
        .ok()?;
    let text = String::from_utf8_lossy(&head);
    let has = |key: &str| text.lines().any(|l| l.starts_with(key));
    if has("steps:") {
        Some(FileKind::Scenario)
    } else if has("target:") {
        Some(FileKind::Payload)
    } else if has("kind:") {
        Some(FileKind::Lab)
    } else {
        None
    }
}

fn yaml_in(dir: &Path) -> Result<Vec<PathBuf>, CliError> {
    let rd = std::fs::read_dir(dir).map_err(|source| CliError::Io {
        action: format!("list `{}`", dir.display()),
        source,
    })?;
    let mut out: Vec<PathBuf> = rd
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    out.sort();
    Ok(out)
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// Builds the request for explicit paths: the named files, plus (when scenarios are named)
/// the shipped labs and payloads they may reference.
fn request_for_paths(ws: &Workspace, args: &ValidateArgs) -> Result<ValidateRequest, CliError> {
    let mut req = ValidateRequest {
        lab: args.lab.clone(),
        explicit_scenarios: true,
        ..ValidateRequest::default()
    };
    let mut files = Vec::new();
    for p in &args.paths {
        if p.is_dir() {
            files.extend(yaml_in(p)?);
        } else if p.exists() {
            files.push(p.clone());
        } else {
            return Err(CliError::Usage(format!("`{}` does not exist", p.display())));
        }
    }
    for f in files {
        // A FIFO, device or oversize file is refused before anything opens or reads it.
        lab_config::check_regular_file(&f).map_err(CliError::Config)?;
        match kind_of(&f) {
            Some(FileKind::Lab) => req.labs.push(f),
            Some(FileKind::Payload) => req.payloads.push(f),
            Some(FileKind::Scenario) => req.scenarios.push(f),
            None => {
                return Err(CliError::Usage(format!(
                    "cannot tell whether `{}` is a lab, payload or scenario file: put it under vm-configs/, driver-payloads/ or scenarios/, or name it `*.lab.yaml`, `*.payload.yaml` or `*.scenario.yaml`",
                    f.display()
                )));
            }
        }
    }
    if !req.scenarios.is_empty() {
        for p in &ws.payloads {
            if !req.payloads.iter().any(|q| same_file(p, q)) {
                req.payloads.push(p.clone());
            }
        }
        for l in &ws.labs {
            if !req.labs.iter().any(|q| same_file(l, q)) {
                req.labs.push(l.clone());
            }
        }
        let default = ws.default_lab();
        if default.is_file() {
            req.default_lab = req
                .labs
                .iter()
                .find(|l| same_file(l, &default))
                .cloned()
                .or(Some(default));
        }
    }
    Ok(req)
}

/// Runs `hvlab validate`.
pub fn run(root: &Path, args: &ValidateArgs) -> Result<u8, CliError> {
    if let Some(lab) = &args.lab
        && !lab.is_file()
    {
        return Err(CliError::Usage(format!(
            "--lab `{}` is not a file",
            lab.display()
        )));
    }
    let ws = Workspace::discover(root).map_err(|source| CliError::Io {
        action: format!("list configuration files under `{}`", root.display()),
        source,
    })?;
    let req = if args.paths.is_empty() {
        if ws.labs.is_empty() && ws.payloads.is_empty() && ws.scenarios.is_empty() {
            return Err(CliError::Usage(format!(
                "no configuration files found under `{}` (expected vm-configs/, driver-payloads/, scenarios/); pass --root or paths",
                if root.as_os_str().is_empty() {
                    "."
                } else {
                    root.to_str().unwrap_or("?")
                }
            )));
        }
        let mut r = ws.request();
        r.lab = args.lab.clone();
        r
    } else {
        request_for_paths(&ws, args)?
    };
    let validated = validate(&req).map_err(CliError::Config)?;
    println!("{}", validated.summary());
    Ok(exit::SUCCESS)
}
