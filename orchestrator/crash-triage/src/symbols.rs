//! Naming functions of images whose pages a dump does not hold (an unloaded driver, any
//! module of a small dump) from a *symbol path*: folders of the driver files that were
//! loaded (a payload's build folder). Like a debugger matching a PDB to a module, a file is
//! used only when its name and `SizeOfImage` match the module's name and range (the
//! `MmUnloadedDrivers` entry records no image timestamp, so name and size are what can be
//! checked); its export directory then names the function an address follows.
//!
//! Entries of a Debugging Tools symbol path that are not local folders (`srv*...`,
//! `cache*...`, URLs) are left to the debugger and ignored here.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::format::{get_u16, get_u32, pe};
use crate::triage::Triage;

/// An image's named exports: (name, RVA).
pub type Exports = Vec<(String, u32)>;

/// Most exports read from one file.
const MAX_EXPORTS: usize = 4096;
/// Largest driver file read (bigger files are not drivers of a lab payload).
const MAX_FILE: u64 = 64 << 20;

/// The local folders of a symbol path (`dir1;dir2;srv*...`), and the exact image files a
/// run deployed, which are searched first: a payload's build folder may hold sibling
/// variants of one driver that a small dump's cut names cannot tell apart.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SymbolPath {
    pub dirs: Vec<PathBuf>,
    pub images: Vec<PathBuf>,
}

impl SymbolPath {
    /// The entries of `path` (separated by `;`) that are existing local folders.
    pub fn parse(path: &str) -> SymbolPath {
        SymbolPath {
            dirs: path
                .split(';')
                .map(str::trim)
                .filter(|e| !e.is_empty() && !e.contains('*') && !e.contains("://"))
                .map(PathBuf::from)
                .filter(|p| p.is_dir())
                .collect(),
            images: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.dirs.is_empty() && self.images.is_empty()
    }

    /// The exports of the first file named `name` (any case) whose `SizeOfImage` is `size`:
    /// the deployed images first, then the folders.
    pub fn exports(&self, name: &str, size: u64) -> Option<Exports> {
        let image = self.images.iter().filter(|f| file_name_is(f, name));
        let in_dirs = self.dirs.iter().filter_map(|d| find_file(d, name));
        image.cloned().chain(in_dirs).find_map(|file| {
            if std::fs::metadata(&file).ok()?.len() > MAX_FILE {
                return None;
            }
            pe_file_exports(&std::fs::read(&file).ok()?, size)
        })
    }
}

/// Whether `file`'s name is `name`, any case, as Windows compares file names.
fn file_name_is(file: &Path, name: &str) -> bool {
    file.file_name()
        .is_some_and(|n| n.to_string_lossy().eq_ignore_ascii_case(name))
}

/// `dir/name`, matching the name case-insensitively as Windows does.
fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    let exact = dir.join(name);
    if exact.is_file() {
        return Some(exact);
    }
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().eq_ignore_ascii_case(name))
        .map(|e| e.path())
}

/// The named exports of a PE32+ file whose `SizeOfImage` is `size`, as (name, RVA); `None`
/// when it is not such a file or has no readable export directory.
pub fn pe_file_exports(b: &[u8], size: u64) -> Option<Exports> {
    let u16_at = |at: usize| b.get(at..at + 2).map(|_| get_u16(b, at));
    let u32_at = |at: usize| b.get(at..at + 4).map(|_| get_u32(b, at));
    if b.get(..2)? != b"MZ" {
        return None;
    }
    let nt = u32_at(pe::E_LFANEW)? as usize;
    let opt = nt + pe::OPTIONAL_HEADER;
    if b.get(nt..nt + 4)? != b"PE\0\0" || u16_at(opt)? != pe::PE32_PLUS {
        return None;
    }
    if u64::from(u32_at(opt + 0x38)?) != size {
        return None;
    }
    let headers = u32_at(opt + 0x3C)?;
    let sections = usize::from(u16_at(nt + 6)?);
    let table = opt + usize::from(u16_at(nt + 0x14)?);
    // RVA -> file offset: headers map 1:1, sections by their raw data.
    let offset = |rva: u32| -> Option<usize> {
        if rva < headers {
            return Some(rva as usize);
        }
        (0..sections).find_map(|i| {
            let s = table + 40 * i;
            let (va, raw_len, raw) = (u32_at(s + 12)?, u32_at(s + 16)?, u32_at(s + 20)?);
            (rva >= va && rva - va < raw_len).then(|| (raw + (rva - va)) as usize)
        })
    };
    let dir = offset(u32_at(opt + pe::EXPORT_DIRECTORY)?)?;
    let n = (u32_at(dir + pe::EXP_NUMBER_OF_NAMES)? as usize).min(MAX_EXPORTS);
    let functions = offset(u32_at(dir + pe::EXP_ADDRESS_OF_FUNCTIONS)?)?;
    let names = offset(u32_at(dir + pe::EXP_ADDRESS_OF_NAMES)?)?;
    let ordinals = offset(u32_at(dir + pe::EXP_ADDRESS_OF_NAME_ORDINALS)?)?;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let ordinal = usize::from(u16_at(ordinals + 2 * i)?);
        let rva = u32_at(functions + 4 * ordinal)?;
        let at = offset(u32_at(names + 4 * i)?)?;
        let len = b.get(at..)?.iter().take(256).position(|c| *c == 0)?;
        out.push((String::from_utf8_lossy(&b[at..at + len]).into_owned(), rva));
    }
    Some(out)
}

/// The export `rva` follows (greatest RVA not above it) and the offset from it.
fn function_at(exports: &[(String, u32)], rva: u64) -> Option<(&str, u64)> {
    exports
        .iter()
        .filter(|(_, f)| u64::from(*f) <= rva)
        .max_by_key(|(_, f)| *f)
        .map(|(name, f)| (name.as_str(), rva - u64::from(*f)))
}

/// Names the frames (and so the blamed function) that the dump left unnamed from the
/// matching files of `path`. Returns how many frames got a name; a note in the triage's
/// warnings says which files were used, so a reader knows where the names came from.
pub fn symbolize(t: &mut Triage, path: &SymbolPath) -> usize {
    if path.is_empty() {
        return 0;
    }
    complete_cut_names(t, path);
    let mut cache: HashMap<(String, u64), Option<Exports>> = HashMap::new();
    let mut named = 0;
    let mut used = Vec::new();
    for f in t.stack.iter_mut().filter(|f| f.function.is_none()) {
        let Some(module) = &f.module else { continue };
        // The image range the frame lies in: the unloaded entry or the loaded module.
        let range = if f.unloaded {
            t.unloaded_modules
                .iter()
                .rev()
                .find(|u| u.name == *module && u.contains(f.address))
                .map(|u| (u.base, u.size))
        } else {
            t.modules
                .iter()
                .find(|m| m.name == *module && m.contains(f.address))
                .map(|m| (m.base, m.size))
        };
        let Some((base, size)) = range else { continue };
        let exports = cache
            .entry((module.clone(), size))
            .or_insert_with(|| path.exports(module, size));
        let Some(exports) = exports else { continue };
        if let Some((name, offset)) = function_at(exports, f.address - base) {
            f.function = Some(name.to_owned());
            f.offset = offset;
            named += 1;
            if !used.contains(module) {
                used.push(module.clone());
            }
        }
    }
    if !used.is_empty() {
        t.warnings.push(format!(
            "functions of {} named from the symbol path (file matched by name and image size)",
            used.join(", ")
        ));
    }
    named
}

/// A small dump keeps 12 UTF-16 units of an unloaded driver's name (`sample_ext_d`); the
/// full name is taken from the file of the symbol path whose name starts with it (any
/// case) and whose `SizeOfImage` is the entry's size, as a debugger matches an image, when
/// exactly one file does: the entry holds nothing else (no timestamp, no checksum) that
/// could tell two such files apart. The entry, RIP's module and the stack frames are
/// renamed; a warning says so, or names the candidates when there are several.
fn complete_cut_names(t: &mut Triage, path: &SymbolPath) {
    let cut = crate::format::triage_unloaded::NAME_BYTES / 2;
    for i in 0..t.unloaded_modules.len() {
        let (old, size) = (&t.unloaded_modules[i].name, t.unloaded_modules[i].size);
        if old.encode_utf16().count() != cut {
            continue;
        }
        // The deployed images decide when one of them matches; the folders only otherwise.
        let mut candidates = images_starting(&path.images, old, size);
        if candidates.is_empty() {
            candidates = path
                .dirs
                .iter()
                .flat_map(|d| files_starting(d, old, size))
                .collect();
        }
        let mut found: Vec<String> = Vec::new();
        for name in candidates {
            if !found.iter().any(|f| f.eq_ignore_ascii_case(&name)) {
                found.push(name);
            }
        }
        let full = match found.as_slice() {
            [] => continue,
            [one] => one.clone(),
            many => {
                t.warnings.push(format!(
                    "unloaded driver {old} (its name cut to {cut} characters in the dump) \
                     could be any of {} (same prefix and image size): left as it is",
                    many.join(", ")
                ));
                continue;
            }
        };
        let old = std::mem::replace(&mut t.unloaded_modules[i].name, full.clone());
        if let Some(m) = t
            .faulting_module
            .as_mut()
            .filter(|m| m.unloaded && m.name == old)
        {
            m.name = full.clone();
        }
        for f in t.stack.iter_mut().filter(|f| f.unloaded) {
            if f.module.as_deref() == Some(old.as_str()) {
                f.module = Some(full.clone());
            }
        }
        t.warnings.push(format!(
            "unloaded driver {old} (its name cut to {cut} characters in the dump) is {full}: \
             the symbol path's only file with that prefix and image size"
        ));
    }
}

/// The names of the files in `dir` that start with `prefix` (any case), are longer, and
/// are PE32+ images of `size` bytes.
fn files_starting(dir: &Path, prefix: &str, size: u64) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let files: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    images_starting(&files, prefix, size)
}

/// The names of `files` that start with `prefix` (any case), are longer, and are PE32+
/// images of `size` bytes, sorted.
fn images_starting(files: &[PathBuf], prefix: &str, size: u64) -> Vec<String> {
    let prefix = prefix.to_ascii_lowercase();
    let mut out: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let name = f.file_name()?.to_string_lossy().into_owned();
            let lower = name.to_ascii_lowercase();
            if lower.len() <= prefix.len() || !lower.starts_with(&prefix) {
                return None;
            }
            if std::fs::metadata(f).ok()?.len() > MAX_FILE {
                return None;
            }
            let b = std::fs::read(f).ok()?;
            (size_of_image(&b)? == size).then_some(name)
        })
        .collect();
    out.sort();
    out
}

/// `SizeOfImage` of a PE32+ file.
fn size_of_image(b: &[u8]) -> Option<u64> {
    let u32_at = |at: usize| b.get(at..at + 4).map(|_| get_u32(b, at));
    if b.get(..2)? != b"MZ" {
        return None;
    }
    let nt = u32_at(pe::E_LFANEW)? as usize;
    let opt = nt + pe::OPTIONAL_HEADER;
    if b.get(nt..nt + 4)? != b"PE\0\0"
        || b.get(opt..opt + 2).map(|_| get_u16(b, opt))? != pe::PE32_PLUS
    {
        return None;
    }
    u32_at(opt + 0x38).map(u64::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../driver-payloads/sim-build")
    }

    #[test]
    fn payload_driver_files_give_the_kernels_exports() {
        let path = SymbolPath::parse(&format!(
            "srv*C:\\symbols*https://msdl.microsoft.com/download/symbols;{}",
            payload_dir().display()
        ));
        assert_eq!(path.dirs.len(), 1);
        let size = sim_kernel::image_size(sim_kernel::ImageKind::SampleExt);
        let got = path
            .exports("SAMPLE_EXT_DETACH_WITHOUT_RUNDOWN.sys", size)
            .unwrap();
        let mut want: Vec<(String, u32)> =
            sim_kernel::image_exports(sim_kernel::ImageKind::SampleExt)
                .into_iter()
                .map(|(n, r)| (n.to_owned(), r))
                .collect();
        want.sort();
        let mut got = got;
        got.sort();
        assert_eq!(got, want);
        let got = path
            .exports("SAMPLE_EXT_DETACH_WITHOUT_RUNDOWN.sys", size)
            .unwrap();
        // Another size is another build: no names from it.
        assert_eq!(path.exports("sample_ebpf_ext.sys", size + 0x1000), None);
        assert_eq!(path.exports("missing.sys", size), None);

        // A deployed image alone is a symbol path too, found by its name in any case.
        let image = SymbolPath {
            images: vec![payload_dir().join("sample_ext_detach_without_rundown.sys")],
            ..SymbolPath::default()
        };
        assert!(SymbolPath::default().is_empty() && !image.is_empty());
        assert_eq!(
            image.exports("Sample_Ext_Detach_Without_Rundown.SYS", size),
            Some(got)
        );
        assert_eq!(image.exports("sample_ebpf_ext.sys", size), None);
    }

    /// A small dump of the hot-unload race keeps `sample_ext_d` of the driver's name, as
    /// Windows' small dumps do; the payload's driver file of that prefix and image size
    /// completes it, so the small dump buckets with the kernel dump of the same crash.
    #[test]
    fn small_dumps_cut_unloaded_names_and_the_symbol_path_completes_them() {
        use crate::{DumpKind, DumpSpec, Module, UnloadedModule, signature, triage_bytes};
        let name = "sample_ext_detach_without_rundown.sys";
        let size = sim_kernel::image_size(sim_kernel::ImageKind::SampleExt);
        let base = 0xFFFF_F806_1010_0000;
        let path = SymbolPath::parse(&payload_dir().display().to_string());
        // A folder with only the driver that was deployed (its file is in the payload).
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(payload_dir().join(name), dir.path().join(name)).unwrap();
        let only = SymbolPath::parse(&dir.path().display().to_string());
        for code in [0x50, 0xCE] {
            let rip = base + 0x1_00F0;
            let spec = |kind, size: u64| {
                let mut s = DumpSpec::new(
                    kind,
                    code,
                    [rip, 0x10, rip, 0],
                    rip,
                    vec![Module::new(
                        "ntoskrnl.exe",
                        0xFFFF_F806_0000_0000,
                        0x0104_6000,
                    )],
                );
                let older = UnloadedModule {
                    name: "dump_storport.sys".into(),
                    base: 0xFFFF_F806_2000_0000,
                    size: 0x1_0000,
                    time: s.system_time,
                };
                let race = UnloadedModule {
                    name: name.into(),
                    base,
                    size: size as u32,
                    time: s.system_time,
                };
                s.unloaded = vec![older, race];
                s
            };
            let read = |kind, size| {
                let bytes = crate::dump_bytes(&spec(kind, size)).unwrap();
                triage_bytes(Path::new("x.dmp"), bytes).unwrap()
            };
            let mut small = read(DumpKind::Small, size);
            let names: Vec<&str> = small
                .unloaded_modules
                .iter()
                .map(|u| u.name.as_str())
                .collect();
            assert_eq!(
                names,
                ["dump_storpor", "sample_ext_d"],
                "oldest first, cut to 12"
            );
            assert_eq!(small.unloaded_modules[1].base, base);
            assert_eq!(small.unloaded_modules[1].size, size);
            let fm = small.faulting_module.as_ref().unwrap();
            assert_eq!((fm.name.as_str(), fm.unloaded), ("sample_ext_d", true));

            // The payload folder has two drivers of that prefix and size: no guess.
            let mut ambiguous = read(DumpKind::Small, size);
            symbolize(&mut ambiguous, &path);
            assert_eq!(ambiguous.unloaded_modules[1].name, "sample_ext_d");
            assert!(
                ambiguous.warnings.iter().any(|w| w.contains("could be any of sample_ext_detach_without_rundown.sys, sample_ext_double_free_on_replace.sys")),
                "{:?}",
                ambiguous.warnings
            );
            // The folder plus the image the run deployed: the deployed image decides.
            let mut deployed = read(DumpKind::Small, size);
            let with_image = SymbolPath {
                images: vec![payload_dir().join(name)],
                ..path.clone()
            };
            symbolize(&mut deployed, &with_image);
            assert_eq!(deployed.unloaded_modules[1].name, name);
            symbolize(&mut small, &only);
            assert_eq!(small.unloaded_modules[1].name, name);
            assert_eq!(
                small.unloaded_modules[0].name, "dump_storpor",
                "no such file"
            );
            assert_eq!(small.faulting_module.as_ref().unwrap().name, name);
            assert!(
                small.warnings.iter().any(|w| w.contains("cut to 12")),
                "{:?}",
                small.warnings
            );
            let mut kernel = read(DumpKind::Kernel, size);
            symbolize(&mut kernel, &only);
            let (s, k) = (signature(&small, None), signature(&kernel, None));
            assert_eq!((&s.title, &s.id), (&k.title, &k.id));
            assert_eq!(
                s.title,
                format!(
                    "DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS (0xce) in {name} (unloaded)"
                )
            );

            // Another build (image size) of a file with that prefix is not this driver.
            let mut other = read(DumpKind::Small, size + 0x1000);
            symbolize(&mut other, &only);
            assert_eq!(other.unloaded_modules[1].name, "sample_ext_d");
        }
    }

    /// A dump of the hot-unload race: RIP in the unloaded driver, whose pages are gone; the
    /// payload's file names the callback, a file of another size names nothing.
    #[test]
    fn symbolize_names_frames_in_an_unloaded_driver() {
        use crate::{DumpKind, DumpSpec, Module, UnloadedModule, triage_bytes};
        let name = "sample_ext_detach_without_rundown.sys";
        let size = sim_kernel::image_size(sim_kernel::ImageKind::SampleExt);
        let (_, rva) = sim_kernel::image_exports(sim_kernel::ImageKind::SampleExt)
            .into_iter()
            .find(|e| e.0 == "_sample_map_update_entry")
            .unwrap();
        let base = 0xFFFF_F806_1010_0000;
        let rip = base + u64::from(rva);
        let mut spec = DumpSpec::new(
            DumpKind::Kernel,
            0xCE,
            [rip, 0x10, rip, 0],
            rip,
            vec![Module::new(
                "ntoskrnl.exe",
                0xFFFF_F806_0000_0000,
                0x0104_6000,
            )],
        );
        let unloaded = |size| UnloadedModule {
            name: name.into(),
            base,
            size,
            time: spec.system_time,
        };
        spec.unloaded = vec![unloaded(size as u32)];
        let bytes = crate::dump_bytes(&spec).unwrap();
        let mut t = triage_bytes(Path::new("MEMORY.DMP"), bytes).unwrap();
        assert_eq!(t.stack[0].function, None, "the dump alone cannot name it");
        let path = SymbolPath::parse(&payload_dir().display().to_string());
        assert_eq!(symbolize(&mut t, &path), 1);
        assert_eq!(
            t.stack[0].display(),
            format!("{name} (unloaded)!_sample_map_update_entry+0x0")
        );
        assert!(t.warnings.iter().any(|w| w.contains("symbol path")));

        spec.unloaded = vec![unloaded(size as u32 + 0x1000)];
        let mut t =
            triage_bytes(Path::new("MEMORY.DMP"), crate::dump_bytes(&spec).unwrap()).unwrap();
        assert_eq!(
            symbolize(&mut t, &path),
            0,
            "another build must not name frames"
        );
        assert_eq!(symbolize(&mut t, &SymbolPath::default()), 0);
    }

    #[test]
    fn function_at_picks_the_preceding_export() {
        let e = vec![("a".to_owned(), 0x1000), ("b".to_owned(), 0x2000)];
        assert_eq!(function_at(&e, 0x2000), Some(("b", 0)));
        assert_eq!(function_at(&e, 0x1fff), Some(("a", 0xfff)));
        assert_eq!(function_at(&e, 0xfff), None);
    }

    #[test]
    fn junk_is_not_a_pe_file() {
        for b in [&b""[..], b"MZ", b"MZ\0\0\0\0", &[0u8; 64]] {
            assert_eq!(pe_file_exports(b, 0x1000), None);
        }
    }
}
