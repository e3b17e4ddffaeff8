//! Cmdlet contracts: every command in every generated script binds to one documented
//! parameter set (named parameters exist in it, mandatory ones are given, switches get no
//! value and value parameters get one of the documented type), and cmdlets that may prompt
//! are told not to.
//!
//! Every row was checked against the markdown source of its docs page (the learn.microsoft.com
//! URL in the row is rendered from it): Hyper-V rows against MicrosoftDocs/windows-powershell-docs
//! `docset/winserver2022-ps/Hyper-V/<Cmdlet>.md` (commit f113d6b), the others against
//! MicrosoftDocs/PowerShell-Docs `reference/5.1/<Module>/<Cmdlet>.md` (commit 27138b2): set
//! names and order (the first listed is the page's "(Default)" set), mandatory, position,
//! pipeline input ByValue, type and accepted values of every parameter the scripts pass, and
//! whether `-WhatIf`/`-Confirm` appear in the syntax (ShouldProcess). Sets that lack a
//! parameter every call passes are left out; comparison sets of Where-Object are represented
//! by its default one.

use lab_backends::hyperv::script::{PsValue, Script};
use tree_sitter::Node;

use super::ps_parse::{catalogue, direct, parse, walk};

/// A parameter: `Name[:type][|[pipe type]][!][@N]`. `:sw` switch, `:str`, `:i16`/`:i32`/
/// `:i64`/`:u64` integers, `:bool`, `:sb` script block, `:e=A/B` enum with accepted values,
/// anything else an object type; `|` takes pipeline input ByValue (of the parameter's type,
/// or the named one); `!` mandatory; `@N` positional at N.
struct Cmdlet {
    name: &'static str,
    /// Docs page: base URL of the module and the page.
    doc: (&'static str, &'static str),
    confirmed: bool,
    /// ConfirmImpact High, or documented to prompt: needs `-Confirm:$false` or `-Force`.
    prompts: bool,
    /// Supports ShouldProcess (`-WhatIf`, `-Confirm`).
    should_process: bool,
    sets: &'static [&'static [&'static str]],
}

const HV: &str = "https://learn.microsoft.com/powershell/module/hyper-v/";
const MGMT: &str = "https://learn.microsoft.com/powershell/module/microsoft.powershell.management/";
const UTIL: &str = "https://learn.microsoft.com/powershell/module/microsoft.powershell.utility/";
const CORE: &str = "https://learn.microsoft.com/powershell/module/microsoft.powershell.core/";
const SEC: &str = "https://learn.microsoft.com/powershell/module/microsoft.powershell.security/";

macro_rules! c {
    ($n:literal, $base:expr, $page:literal, $conf:literal, $prompts:literal, $sp:literal, [$([$($p:expr),*]),*]) => {
        Cmdlet { name: $n, doc: ($base, $page), confirmed: $conf, prompts: $prompts, should_process: $sp,
                 sets: &[$(&[$($p),*]),*] }
    };
}

const VM: &str = "VM:VirtualMachine|!@0";

const CMDLETS: &[Cmdlet] = &[
    // Hyper-V (docs: HV + page).
    // Sets Name (Default), Id: both optional, so a bare `Get-VM` binds the default set.
    c!(
        "Get-VM",
        HV,
        "get-vm",
        true,
        false,
        false,
        [
            ["Name:str|@0"],
            ["Id:guid|@0"],
            ["ClusterObject:PSObject|!@0"]
        ]
    ),
    // The host health check: switches listed by name in hvlab's own filter.
    c!(
        "Get-VMSwitch",
        HV,
        "get-vmswitch",
        true,
        false,
        false,
        [
            ["Name:str@0", "ResourcePoolName:str@1"],
            ["Id:guid@0", "ResourcePoolName:str@1"]
        ]
    ),
    // Sets Loaded (Default) and Available, where -ListAvailable is mandatory.
    c!(
        "Get-Module",
        CORE,
        "get-module",
        true,
        false,
        false,
        [
            ["Name:str|@0", "All:sw"],
            ["Name:str|@0", "All:sw", "ListAvailable:sw!"]
        ]
    ),
    // Sets DynamicWithoutSource (Default), Differencing.
    c!(
        "New-VHD",
        HV,
        "new-vhd",
        true,
        false,
        true,
        [
            ["Path:str|!@0", "SizeBytes:u64!@1", "Dynamic:sw"],
            [
                "Path:str|!@0",
                "ParentPath:str!@1",
                "SizeBytes:u64@2",
                "Differencing:sw"
            ]
        ]
    ),
    // Sets No VHD (Default), Existing VHD.
    c!(
        "New-VM",
        HV,
        "new-vm",
        true,
        false,
        true,
        [
            [
                "Name:str|@0",
                "MemoryStartupBytes:i64@1",
                "Generation:e=1/2@2",
                "NoVHD:sw",
                "Path:str",
                "SwitchName:str",
                "Force:sw"
            ],
            [
                "Name:str|@0",
                "MemoryStartupBytes:i64@1",
                "Generation:e=1/2@2",
                "VHDPath:str!",
                "Path:str",
                "SwitchName:str",
                "Force:sw"
            ]
        ]
    ),
    // Sets Name (Default), VMObject.
    c!(
        "Set-VM",
        HV,
        "set-vm",
        true,
        false,
        true,
        [
            [
                "Name:str|!@0",
                "StaticMemory:sw",
                "ProcessorCount:i64",
                "CheckpointType:e=Disabled/Production/ProductionOnly/Standard",
                "AutomaticStopAction:e=TurnOff/Save/ShutDown",
                "Notes:str"
            ],
            [
                VM,
                "StaticMemory:sw",
                "ProcessorCount:i64",
                "CheckpointType:e=Disabled/Production/ProductionOnly/Standard",
                "AutomaticStopAction:e=TurnOff/Save/ShutDown",
                "Notes:str"
            ]
        ]
    ),
    c!(
        "Set-VMFirmware",
        HV,
        "set-vmfirmware",
        true,
        false,
        true,
        [
            ["VMName:str|!@0", "EnableSecureBoot:e=On/Off"],
            [VM, "EnableSecureBoot:e=On/Off"],
            ["VMFirmware:VMFirmware|!@0", "EnableSecureBoot:e=On/Off"]
        ]
    ),
    c!(
        "Get-VMIntegrationService",
        HV,
        "get-vmintegrationservice",
        true,
        false,
        false,
        [
            ["VMName:str|!@0", "Name:str@1"],
            [VM, "Name:str@1"],
            ["VMSnapshot:VMSnapshot|!@0", "Name:str@1"]
        ]
    ),
    // Sets VMName (Default), VMIntegrationService, VMObject: -Name is position 0 and the VM
    // position 1 in the by-name and by-object sets.
    c!(
        "Enable-VMIntegrationService",
        HV,
        "enable-vmintegrationservice",
        true,
        false,
        true,
        [
            ["Name:str!@0", "VMName:str|!@1"],
            ["VMIntegrationService:VMIntegrationComponent|!@0"],
            ["Name:str!@0", "VM:VirtualMachine|!@1"]
        ]
    ),
    // Sets Name_SwitchName (Default), Object_SwitchName. The page gives -Name and
    // -SwitchName both position 1; the scripts pass both by name.
    c!(
        "Connect-VMNetworkAdapter",
        HV,
        "connect-vmnetworkadapter",
        true,
        false,
        true,
        [
            ["VMName:str!@0", "Name:str", "SwitchName:str!@1"],
            ["VMNetworkAdapter:VMNetworkAdapter|!@0", "SwitchName:str!@1"]
        ]
    ),
    c!(
        "Start-VM",
        HV,
        "start-vm",
        true,
        false,
        true,
        [["Name:str|!@0"], [VM]]
    ),
    // The page does not say that Stop-VM prompts; -Force skips the locked-VM question, so the
    // contract keeps requiring it.
    c!(
        "Stop-VM",
        HV,
        "stop-vm",
        true,
        true,
        true,
        [
            ["Name:str|!@0", "Force:sw", "TurnOff:sw", "Save:sw"],
            [VM, "Force:sw", "TurnOff:sw", "Save:sw"]
        ]
    ),
    c!(
        "Get-VMNetworkAdapter",
        HV,
        "get-vmnetworkadapter",
        true,
        false,
        false,
        [
            ["VMName:str|!@0", "Name:str@1", "IsLegacy:bool"],
            [VM, "Name:str@1", "IsLegacy:bool"]
        ]
    ),
    c!(
        "Get-VMSnapshot",
        HV,
        "get-vmsnapshot",
        true,
        false,
        false,
        [["VMName:str|!@0", "Name:str@1"], [VM, "Name:str@1"]]
    ),
    // Sets SnapshotName (Default), VMObject, SnapshotObject. The page does not state the
    // ConfirmImpact; removing checkpoints is destructive, so `-Confirm:$false` stays required.
    c!(
        "Remove-VMSnapshot",
        HV,
        "remove-vmsnapshot",
        true,
        true,
        true,
        [
            [
                "VMName:str!@0",
                "Name:str|@1",
                "IncludeAllChildSnapshots:sw"
            ],
            [VM, "Name:str|@1", "IncludeAllChildSnapshots:sw"],
            ["VMSnapshot:VMSnapshot|!@0", "IncludeAllChildSnapshots:sw"]
        ]
    ),
    c!(
        "Checkpoint-VM",
        HV,
        "checkpoint-vm",
        true,
        false,
        true,
        [
            ["Name:str|!@0", "SnapshotName:str@1"],
            [VM, "SnapshotName:str@1"]
        ]
    ),
    // Sets SnapshotName (Default), SnapshotObject, VM. The page's parameter tables give -Name
    // position 0 in the VM set too; the syntax lists it after -VM (position 1 here).
    c!(
        "Restore-VMSnapshot",
        HV,
        "restore-vmsnapshot",
        true,
        true,
        true,
        [
            ["Name:str!@0", "VMName:str!@1"],
            ["VMSnapshot:VMSnapshot|!@0"],
            ["VM:VirtualMachine|!@0", "Name:str!@1"]
        ]
    ),
    c!(
        "Get-VMHardDiskDrive",
        HV,
        "get-vmharddiskdrive",
        true,
        false,
        false,
        [["VMName:str|!@0"], [VM]]
    ),
    // -Force: "confirmation prompts are to be suppressed during deletion".
    c!(
        "Remove-VM",
        HV,
        "remove-vm",
        true,
        true,
        true,
        [["Name:str|!@0", "Force:sw"], [VM, "Force:sw"]]
    ),
    // -Force: "without asking for user confirmation".
    c!(
        "Debug-VM",
        HV,
        "debug-vm",
        true,
        true,
        true,
        [
            ["Name:str|!@0", "Force:sw", "InjectNonMaskableInterrupt:sw"],
            [VM, "Force:sw", "InjectNonMaskableInterrupt:sw"]
        ]
    ),
    // -Force: "without asking for user confirmation".
    c!(
        "Copy-VMFile",
        HV,
        "copy-vmfile",
        true,
        true,
        true,
        [
            [
                "Name:str!@0",
                "SourcePath:str|!@1",
                "DestinationPath:str!@2",
                "FileSource:e=Host!",
                "CreateFullPath:sw",
                "Force:sw"
            ],
            [
                VM,
                "SourcePath:str|!@1",
                "DestinationPath:str!@2",
                "FileSource:e=Host!",
                "CreateFullPath:sw",
                "Force:sw"
            ]
        ]
    ),
    // PowerShell Core / Management / Utility / Security.
    // Sets InProcess (Default), VMName (-VMName is named, not positional).
    c!(
        "Invoke-Command",
        CORE,
        "invoke-command",
        true,
        false,
        false,
        [
            [
                "ScriptBlock:sb!@0",
                "NoNewScope:sw",
                "InputObject:PSObject|",
                "ArgumentList:obj"
            ],
            [
                "VMName:str!",
                "Credential:PSCredential!",
                "ScriptBlock:sb!@0",
                "InputObject:PSObject|",
                "ArgumentList:obj"
            ]
        ]
    ),
    // Sets ComputerName (Default), VMName.
    c!(
        "New-PSSession",
        CORE,
        "new-pssession",
        true,
        false,
        false,
        [
            ["ComputerName:str@0", "Credential:PSCredential"],
            ["VMName:str!", "Credential:PSCredential!"]
        ]
    ),
    // Sets Id (Default), Session.
    c!(
        "Remove-PSSession",
        CORE,
        "remove-pssession",
        true,
        false,
        true,
        [["Id:i32!@0"], ["Session:PSSession|!@0"]]
    ),
    // Sets EqualSet (Default, standing for the comparison sets), ScriptBlockSet.
    c!(
        "Where-Object",
        CORE,
        "where-object",
        true,
        false,
        false,
        [
            [
                "Property:str!@0",
                "Value:obj@1",
                "EQ:sw",
                "InputObject:PSObject|"
            ],
            ["FilterScript:sb!@0", "InputObject:PSObject|"]
        ]
    ),
    // Sets ScriptBlockSet (Default), PropertyAndMethodSet.
    c!(
        "ForEach-Object",
        CORE,
        "foreach-object",
        true,
        false,
        true,
        [
            [
                "Process:sb!@0",
                "Begin:sb",
                "End:sb",
                "InputObject:PSObject|"
            ],
            [
                "MemberName:str!@0",
                "ArgumentList:obj",
                "InputObject:PSObject|"
            ]
        ]
    ),
    c!(
        "Out-Null",
        CORE,
        "out-null",
        true,
        false,
        false,
        [["InputObject:PSObject|"]]
    ),
    // FileSystem provider sets Path (Default), LiteralPath; -FromSession/-ToSession exist only
    // there.
    c!(
        "Copy-Item",
        MGMT,
        "copy-item",
        true,
        false,
        true,
        [
            [
                "Path:str|!@0",
                "Destination:str@1",
                "Force:sw",
                "FromSession:PSSession",
                "ToSession:PSSession",
                "Recurse:sw"
            ],
            [
                "LiteralPath:str!",
                "Destination:str@1",
                "Force:sw",
                "FromSession:PSSession",
                "ToSession:PSSession",
                "Recurse:sw"
            ]
        ]
    ),
    // The page: a container with children prompts unless -Recurse is given.
    c!(
        "Remove-Item",
        MGMT,
        "remove-item",
        true,
        true,
        true,
        [
            ["Path:str|!@0", "Recurse:sw", "Force:sw"],
            ["LiteralPath:str!", "Recurse:sw", "Force:sw"]
        ]
    ),
    // -Force: "without asking for user confirmation".
    c!(
        "Move-Item",
        MGMT,
        "move-item",
        true,
        true,
        true,
        [
            ["Path:str|!@0", "Destination:str@1", "Force:sw"],
            ["LiteralPath:str!", "Destination:str@1", "Force:sw"]
        ]
    ),
    // Sets pathSet (Default), nameSet.
    c!(
        "New-Item",
        MGMT,
        "new-item",
        true,
        false,
        true,
        [
            ["Path:str!@0", "ItemType:str", "Force:sw", "Value:obj|"],
            [
                "Path:str@0",
                "Name:str!",
                "ItemType:str",
                "Force:sw",
                "Value:obj|"
            ]
        ]
    ),
    c!(
        "New-ItemProperty",
        MGMT,
        "new-itemproperty",
        true,
        false,
        true,
        [
            [
                "Path:str!@0",
                "Name:str!@1",
                "PropertyType:e=String/ExpandString/Binary/DWord/MultiString/Qword/Unknown",
                "Value:obj",
                "Force:sw"
            ],
            [
                "LiteralPath:str!",
                "Name:str!@1",
                "PropertyType:e=String/ExpandString/Binary/DWord/MultiString/Qword/Unknown",
                "Value:obj",
                "Force:sw"
            ]
        ]
    ),
    c!(
        "Get-Item",
        MGMT,
        "get-item",
        true,
        false,
        false,
        [
            ["Path:str|!@0", "Force:sw"],
            ["LiteralPath:str!", "Force:sw"]
        ]
    ),
    // Sets Items (Default), LiteralItems.
    c!(
        "Get-ChildItem",
        MGMT,
        "get-childitem",
        true,
        false,
        false,
        [
            ["Path:str|@0", "Filter:str@1", "Force:sw"],
            ["LiteralPath:str!", "Filter:str@1", "Force:sw"]
        ]
    ),
    c!(
        "Test-Path",
        MGMT,
        "test-path",
        true,
        false,
        false,
        [
            ["Path:str|!@0", "PathType:e=Any/Container/Leaf"],
            ["LiteralPath:str!", "PathType:e=Any/Container/Leaf"]
        ]
    ),
    c!(
        "Join-Path",
        MGMT,
        "join-path",
        true,
        false,
        false,
        [["Path:str|!@0", "ChildPath:str!@1", "Resolve:sw"]]
    ),
    // Sets ParentSet (Default) ... LiteralPathSet, which has no -Parent.
    c!(
        "Split-Path",
        MGMT,
        "split-path",
        true,
        false,
        false,
        [
            ["Path:str|!@0", "Parent:sw"],
            ["Path:str|!@0", "Leaf:sw!"],
            ["LiteralPath:str!", "Resolve:sw"]
        ]
    ),
    c!(
        "Get-FileHash",
        UTIL,
        "get-filehash",
        true,
        false,
        false,
        [
            [
                "Path:str!@0",
                "Algorithm:e=SHA1/SHA256/SHA384/SHA512/MACTripleDES/MD5/RIPEMD160"
            ],
            [
                "LiteralPath:str!",
                "Algorithm:e=SHA1/SHA256/SHA384/SHA512/MACTripleDES/MD5/RIPEMD160"
            ]
        ]
    ),
    c!(
        "ConvertTo-Json",
        UTIL,
        "convertto-json",
        true,
        false,
        false,
        [["InputObject:PSObject|!@0", "Compress:sw", "Depth:i32"]]
    ),
    // Sets Net (Default), Com.
    c!(
        "New-Object",
        UTIL,
        "new-object",
        true,
        false,
        false,
        [
            ["TypeName:str!@0", "ArgumentList:obj@1"],
            ["ComObject:str!@0", "Strict:sw"]
        ]
    ),
    c!(
        "Sort-Object",
        UTIL,
        "sort-object",
        true,
        false,
        false,
        [["Property:obj@0", "Descending:sw", "InputObject:PSObject|"]]
    ),
    // Sets FromSource (Default), FromPath.
    c!(
        "Add-Type",
        UTIL,
        "add-type",
        true,
        false,
        false,
        [["TypeDefinition:str!@0"], ["Path:str!@0"]]
    ),
    // Sets Secure (Default), PlainText. The page gives the switches positions 1 and 2;
    // switches never bind positionally, so none are written here.
    c!(
        "ConvertTo-SecureString",
        SEC,
        "convertto-securestring",
        true,
        false,
        false,
        [
            ["String:str|!@0", "SecureKey:SecureString@1"],
            ["String:str|!@0", "AsPlainText:sw", "Force:sw"]
        ]
    ),
    c!(
        "Get-CimInstance",
        "https://learn.microsoft.com/powershell/module/cimcmdlets/",
        "get-ciminstance",
        true,
        false,
        false,
        [["ClassName:str!@0", "Filter:str"]]
    ),
    // GetLogSet (Default); the page numbers -LogName position 1 (the first positional).
    c!(
        "Get-WinEvent",
        "https://learn.microsoft.com/powershell/module/microsoft.powershell.diagnostics/",
        "get-winevent",
        true,
        false,
        false,
        [["LogName:str|@1", "FilterXPath:str", "MaxEvents:i64"]]
    ),
];

/// What a producer in a pipeline emits (the docs' OUTPUTS section), for ByValue binding.
/// Filters pass their input through; a producer not listed is not checked.
const OUTPUTS: &[(&str, &str)] = &[
    ("Get-VM", "VirtualMachine"),
    ("Get-VMSnapshot", "VMSnapshot"),
    ("Get-VMIntegrationService", "VMIntegrationComponent"),
    ("Get-VMNetworkAdapter", "VMNetworkAdapter"),
    ("Get-VMHardDiskDrive", "HardDiskDrive"),
    ("Get-VMSwitch", "VMSwitch"),
];
const FILTERS: &[&str] = &["Where-Object", "Sort-Object"];

/// Defined by the scripts themselves, or native programs.
const OWN: &[&str] = &[
    "ConvertTo-HvlabJson",
    "New-HvlabError",
    "Invoke-HvlabProcess",
    "taskkill.exe",
];
/// Common parameters every cmdlet takes.
const COMMON: &[&str] = &["ErrorAction", "WarningAction", "Verbose", "ErrorVariable"];

struct Spec<'a> {
    name: &'a str,
    /// `sw`, `str`, an integer, `bool`, `sb`, `e=A/B`, or an object type.
    ty: &'a str,
    mandatory: bool,
    /// The type taken from the pipeline ByValue.
    pipe: Option<&'a str>,
    position: Option<usize>,
}

impl Spec<'_> {
    fn switch(&self) -> bool {
        self.ty == "sw"
    }
}

fn spec(p: &str) -> Spec<'_> {
    let (head, pos) = match p.split_once('@') {
        Some((h, n)) => (h, n.parse().ok()),
        None => (p, None),
    };
    let mandatory = head.ends_with('!');
    let head = head.trim_end_matches('!');
    let (head, pipe) = match head.split_once('|') {
        Some((h, t)) => (h, Some(t)),
        None => (head, None),
    };
    let (name, ty) = head.split_once(':').unwrap_or((head, "obj"));
    Spec {
        name,
        ty,
        mandatory,
        pipe: pipe.map(|t| if t.is_empty() { ty } else { t }),
        position: pos,
    }
}

const INTEGERS: &[&str] = &["i16", "i32", "i64", "u64"];

/// Whether `v` (the argument's source text) is a value of kind `ty`. Variables, member
/// accesses of `$P` and expressions are resolved through `param` where they can be, else
/// accepted; literals are checked.
fn kind(ty: &str, v: &str, param: &dyn Fn(&str) -> Option<PsValue>) -> Result<(), String> {
    let unquoted = v
        .strip_prefix('\'')
        .and_then(|s| s.strip_suffix('\''))
        .or_else(|| v.strip_prefix('"').and_then(|s| s.strip_suffix('"')));
    let is_bool = v.eq_ignore_ascii_case("$true") || v.eq_ignore_ascii_case("$false");
    let free = matches!(ty, "obj" | "PSObject");
    let bad = |what: &str| Err(format!("{what} `{v}` for a {ty} parameter"));
    if v.starts_with('{') != (ty == "sb") && !free {
        return bad(if ty == "sb" {
            "non-script-block"
        } else {
            "script block"
        });
    }
    if is_bool {
        return if matches!(ty, "bool" | "sw") || free {
            Ok(())
        } else {
            bad("boolean")
        };
    }
    if let Some(field) = v.strip_prefix("$P.")
        && field.chars().all(|c| c.is_ascii_alphanumeric())
        && let Some(value) = param(field)
    {
        return match (&value, ty) {
            (PsValue::Int(_), t) if INTEGERS.contains(&t) => Ok(()),
            (PsValue::Int(n), t)
                if t.starts_with("e=") && t[2..].split('/').any(|a| *a == n.to_string()) =>
            {
                Ok(())
            }
            (PsValue::Bool(_), "bool" | "sw") => Ok(()),
            (PsValue::Str(s), t) if t.starts_with("e=") => {
                if t[2..].split('/').any(|a| a.eq_ignore_ascii_case(s)) {
                    Ok(())
                } else {
                    bad(&format!("value {s:?} of"))
                }
            }
            (PsValue::Str(_) | PsValue::Secret(_) | PsValue::Unread(_), "str") => Ok(()),
            (_, t) if free || !(INTEGERS.contains(&t) || matches!(t, "bool" | "str")) => Ok(()),
            (value, _) => bad(&format!("{value:?} in")),
        };
    }
    if v.starts_with(['$', '(', '@', '[']) {
        return Ok(());
    }
    let number = v
        .trim_end_matches(|c: char| c.is_ascii_alphabetic())
        .parse::<i64>()
        .is_ok();
    match ty {
        t if INTEGERS.contains(&t) => {
            if unquoted.is_none() && number && !(t == "u64" && v.starts_with('-')) {
                Ok(())
            } else {
                bad("non-number")
            }
        }
        "bool" | "sw" => bad("non-boolean"),
        t if t.starts_with("e=") => {
            let lit = unquoted.unwrap_or(v);
            if t[2..].split('/').any(|a| a.eq_ignore_ascii_case(lit)) {
                Ok(())
            } else {
                bad("unaccepted value")
            }
        }
        _ => Ok(()),
    }
}

/// One invocation: named parameters (with whether `-P:value` gave a value) and arguments.
#[derive(Debug)]
struct Call {
    name: String,
    piped: bool,
    /// What the pipeline feeds it, when the producer is known (see `OUTPUTS`).
    upstream: Option<&'static str>,
    /// (parameter, colon value, following argument present)
    named: Vec<(String, Option<String>, Option<String>)>,
    args: Vec<String>,
    text: String,
}

fn command_name<'t>(n: Node, text: &'t str) -> Option<&'t str> {
    let mut c = n.walk();
    let name = n
        .children(&mut c)
        .find(|k| k.kind() == "command_name" || k.kind() == "command_name_expr")?;
    Some(&text[name.byte_range()])
}

/// The type the pipeline feeds `n`: the producer before it, looking through filters.
fn upstream(mut n: Node, text: &str) -> Option<&'static str> {
    loop {
        let bar = n.prev_sibling().filter(|b| b.kind() == "|")?;
        let prev = bar.prev_sibling().filter(|p| p.kind() == "command")?;
        let name = command_name(prev, text)?;
        if FILTERS.iter().any(|f| f.eq_ignore_ascii_case(name)) {
            n = prev;
            continue;
        }
        return OUTPUTS
            .iter()
            .find(|(c, _)| c.eq_ignore_ascii_case(name))
            .map(|(_, t)| *t);
    }
}

fn calls(text: &str) -> Vec<Call> {
    let (tree, text) = parse(text);
    let mut out = Vec::new();
    walk(tree.root_node(), &mut |n: Node| {
        if n.kind() != "command" {
            return;
        }
        let mut c = n.walk();
        let kids: Vec<Node> = n.children(&mut c).collect();
        let Some(name) = command_name(n, &text) else {
            return;
        };
        let piped = n.prev_sibling().is_some_and(|p| p.kind() == "|");
        let mut call = Call {
            name: name.to_owned(),
            piped,
            upstream: upstream(n, &text),
            named: vec![],
            args: vec![],
            text: text[n.byte_range()].to_owned(),
        };
        if let Some(el) = kids.iter().find(|k| k.kind() == "command_elements") {
            let mut c = el.walk();
            let items: Vec<Node> = el
                .children(&mut c)
                .filter(|k| k.kind() != "redirection")
                .collect();
            let mut i = 0;
            while i < items.len() {
                let k = items[i];
                let t = text[k.byte_range()].to_owned();
                if k.kind() == "command_parameter" {
                    let colon = items.get(i + 1).is_some_and(|s| {
                        s.kind() == "command_argument_sep" && text[s.byte_range()].trim() == ":"
                    });
                    if colon {
                        let v = items.get(i + 2).map(|v| text[v.byte_range()].to_owned());
                        call.named.push((
                            t.trim_start_matches('-').trim_end_matches(':').to_owned(),
                            v,
                            None,
                        ));
                        i += 3;
                        continue;
                    }
                    let next = items[i + 1..]
                        .iter()
                        .find(|s| s.kind() != "command_argument_sep")
                        .filter(|s| s.kind() != "command_parameter")
                        .map(|s| text[s.byte_range()].to_owned());
                    call.named
                        .push((t.trim_start_matches('-').to_owned(), None, next));
                } else if k.kind() != "command_argument_sep" {
                    call.args.push(t);
                }
                i += 1;
            }
        }
        out.push(call);
    });
    out
}

/// The sets `call` binds to, or why none; `param` resolves `$P.<field>`.
fn bind(
    cmd: &Cmdlet,
    call: &Call,
    param: &dyn Fn(&str) -> Option<PsValue>,
) -> Result<Vec<usize>, String> {
    let mut ok = Vec::new();
    let mut why = Vec::new();
    'sets: for (si, set) in cmd.sets.iter().enumerate() {
        let specs: Vec<Spec> = set.iter().map(|p| spec(p)).collect();
        let mut args = call.args.clone();
        let mut given = Vec::new();
        for (p, colon, next) in &call.named {
            let sp = specs.iter().find(|s| s.name.eq_ignore_ascii_case(p));
            let common = COMMON.iter().any(|c| c.eq_ignore_ascii_case(p))
                || (cmd.should_process
                    && ["Confirm", "WhatIf"]
                        .iter()
                        .any(|c| c.eq_ignore_ascii_case(p)));
            match (sp, common) {
                (Some(s), _) if s.switch() => {
                    // `-S:$false` is a switch's only way to take a value.
                    if let Some(v) = colon
                        && let Err(e) = kind("bool", v, param)
                    {
                        why.push(format!("set {si}: -{p}: {e}"));
                        continue 'sets;
                    }
                    given.push(s.name)
                }
                (Some(s), _) => {
                    let value = match (colon, next) {
                        (Some(v), _) => v,
                        (None, Some(v)) => {
                            // The value is the next argument: take it from the positional list.
                            if let Some(at) = args.iter().position(|a| a == v) {
                                args.remove(at);
                            }
                            v
                        }
                        (None, None) => {
                            why.push(format!("set {si}: -{p} has no value"));
                            continue 'sets;
                        }
                    };
                    if let Err(e) = kind(s.ty, value, param) {
                        why.push(format!("set {si}: -{p}: {e}"));
                        continue 'sets;
                    }
                    given.push(s.name)
                }
                (None, true) => {
                    if p.eq_ignore_ascii_case("ErrorAction")
                        && colon.is_none()
                        && let Some(v) = next
                        && let Some(at) = args.iter().position(|a| a == v)
                    {
                        args.remove(at);
                    }
                }
                (None, false) => {
                    why.push(format!("set {si}: no -{p}"));
                    continue 'sets;
                }
            }
        }
        // Switches never bind by position, whatever position a page prints.
        let mut free: Vec<&Spec> = specs
            .iter()
            .filter(|s| s.position.is_some() && !s.switch() && !given.contains(&s.name))
            .collect();
        free.sort_by_key(|s| s.position);
        if args.len() > free.len() {
            why.push(format!("set {si}: {} positional arguments", args.len()));
            continue;
        }
        for (s, v) in free.iter().zip(&args) {
            if let Err(e) = kind(s.ty, v, param) {
                why.push(format!(
                    "set {si}: -{} (position {:?}): {e}",
                    s.name, s.position
                ));
                continue 'sets;
            }
            given.push(s.name);
        }
        // Pipeline input binds ByValue to a free parameter of the producer's type (anything
        // binds to PSObject/Object, and an unknown producer is not checked).
        let takes = |s: &Spec| {
            s.pipe.is_some_and(|t| {
                matches!(t, "PSObject" | "obj") || call.upstream.is_none_or(|u| u == t)
            }) && !given.contains(&s.name)
        };
        let from_pipe = if call.piped {
            match specs.iter().find(|s| takes(s)) {
                Some(s) => Some(s.name),
                None => {
                    why.push(format!(
                        "set {si}: no parameter takes {} from the pipeline",
                        call.upstream.unwrap_or("the input")
                    ));
                    continue;
                }
            }
        } else {
            None
        };
        for s in &specs {
            if s.mandatory && !given.contains(&s.name) && from_pipe != Some(s.name) {
                why.push(format!("set {si}: mandatory -{} missing", s.name));
                continue 'sets;
            }
        }
        ok.push(si);
    }
    if ok.is_empty() {
        Err(why.join("; "))
    } else {
        Ok(ok)
    }
}

#[test]
fn every_command_binds_to_a_documented_parameter_set_and_never_prompts() {
    let mut checked = 0;
    let mut seen = std::collections::BTreeSet::new();
    for script in catalogue(r"C:\x\a.bin") {
        for s in [script.clone(), script.through(direct("vm"))] {
            for call in calls(&s.render()) {
                // `& { ... }` runs a script block: not a command to bind.
                if OWN.contains(&call.name.as_str()) || call.name.starts_with('{') {
                    continue;
                }
                let cmd = CMDLETS
                    .iter()
                    .find(|c| c.name.eq_ignore_ascii_case(&call.name))
                    .unwrap_or_else(|| {
                        panic!("{}: `{}` is not in the contract table", s.op, call.name)
                    });
                let sets = bind(cmd, &call, &|f| s.param(f).cloned()).unwrap_or_else(|e| {
                    panic!(
                        "{}: `{}` binds to no set of {}{}{}: {e}",
                        s.op,
                        call.text.trim(),
                        cmd.doc.0,
                        cmd.doc.1,
                        if cmd.confirmed {
                            ""
                        } else {
                            " (row not re-confirmed)"
                        }
                    )
                });
                // Several matches: PowerShell picks the default (first) set, which must be one.
                assert!(
                    sets.len() == 1 || sets.contains(&0),
                    "{}: `{}` is ambiguous: sets {sets:?}",
                    s.op,
                    call.text.trim()
                );
                if cmd.prompts {
                    let no_prompt = call.named.iter().any(|(p, v, _)| {
                        (p.eq_ignore_ascii_case("Confirm") && v.as_deref() == Some("$false"))
                            || p.eq_ignore_ascii_case("Force")
                    });
                    assert!(
                        no_prompt,
                        "{}: `{}` may prompt: add -Confirm:$false or -Force",
                        s.op,
                        call.text.trim()
                    );
                }
                seen.insert(cmd.name);
                checked += 1;
            }
        }
    }
    eprintln!("checked {checked} invocations of {} cmdlets", seen.len());
    let unused: Vec<_> = CMDLETS
        .iter()
        .filter(|c| !seen.contains(c.name))
        .map(|c| c.name)
        .collect();
    assert!(unused.is_empty(), "rows no script uses: {unused:?}");
}

/// The binder rejects what PowerShell would reject: a missing mandatory parameter, an unknown
/// one, a value of the wrong kind, pipeline input no parameter takes.
#[test]
fn the_binder_catches_wrong_calls() {
    let find = |n: &str| CMDLETS.iter().find(|c| c.name == n).unwrap();
    let script = Script::new("t", "")
        .with("Mem", 4i64 << 30)
        .with("Mem2", "4GB")
        .with("Kind", "Snapshot");
    let param = |f: &str| script.param(f).cloned();
    for (cmd, text) in [
        (
            "Copy-VMFile",
            "Copy-VMFile -VM $vm -SourcePath a -DestinationPath b",
        ),
        ("Debug-VM", "Debug-VM -VM $vm -Nmi"),
        ("Set-VMFirmware", "Set-VMFirmware -VM $vm -EnableSecureBoot"),
        (
            "Set-VMFirmware",
            "Set-VMFirmware -VM $vm -EnableSecureBoot $true",
        ),
        ("Restore-VMSnapshot", "Restore-VMSnapshot -Name x"),
        (
            "New-VM",
            "New-VM -Name x -MemoryStartupBytes '4GB' -VHDPath v",
        ),
        (
            "New-VM",
            "New-VM -Name x -MemoryStartupBytes $P.Mem2 -VHDPath v",
        ),
        ("New-VM", "New-VM -Name x -Generation 3 -VHDPath v"),
        ("Set-VM", "Set-VM -VM $vm -AutomaticStopAction Off"),
        ("Set-VM", "Set-VM -VM $vm -CheckpointType $P.Kind"),
        ("Set-VM", "Set-VM -VM $vm -StaticMemory:1"),
        ("Where-Object", "Where-Object -Property { $_ }"),
        ("Remove-VM", "Get-VMSnapshot -VM $vm | Remove-VM -Force"),
        (
            "Remove-VMSnapshot",
            "Get-VMSwitch | Remove-VMSnapshot -Confirm:$false",
        ),
    ] {
        let call = calls(text).into_iter().find(|c| c.name == cmd).unwrap();
        assert!(bind(find(cmd), &call, &param).is_err(), "{text}");
    }
    // And accepts their right forms.
    for (cmd, text, set) in [
        (
            "New-VM",
            "New-VM -Name x -MemoryStartupBytes $P.Mem -VHDPath v",
            1,
        ),
        ("New-VM", "New-VM x 4GB 2", 0),
        (
            "Set-VM",
            "Set-VM -VM $vm -AutomaticStopAction 'ShutDown' -StaticMemory:$true",
            1,
        ),
        (
            "Remove-VM",
            "Get-VM | Where-Object { $_ } | Remove-VM -Force",
            1,
        ),
        (
            "Remove-VMSnapshot",
            "Get-VMSnapshot -VM $vm | Remove-VMSnapshot",
            2,
        ),
        ("Where-Object", "Where-Object Name -EQ x", 0),
    ] {
        let call = calls(text).into_iter().find(|c| c.name == cmd).unwrap();
        assert_eq!(bind(find(cmd), &call, &param), Ok(vec![set]), "{text}");
    }
}
