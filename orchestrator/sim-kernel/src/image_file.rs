//! Sim driver files as PE images: a `.sys` of the sim payload is a PE32+ file whose headers
//! carry the export directory of the functions the model attributes code to (the same RVAs
//! the kernel uses for RIPs and return addresses) and whose `.hvlab` section holds the
//! `hvlab-sim-driver/1` manifest. Triage reads the exports from the payload's files as a
//! debugger reads a PDB from a symbol path, to name functions of images whose pages are not
//! in a dump (unloaded drivers).
//!
//! Layout: the file is laid out as the image is mapped for the headers (file offset = RVA
//! below `SizeOfHeaders`); the export directory sits at 0x200 inside the headers, as in the
//! image headers a sim dump holds.

use crate::image::ImageKind;
use crate::modules::{self, Module};

/// `e_lfanew`: where `PE\0\0` starts.
const NT: usize = 0x80;
/// `IMAGE_OPTIONAL_HEADER64` follows the signature and the 20-byte file header.
const OPT: usize = NT + 0x18;
const OPT_SIZE: usize = 0xF0;
const SECTIONS: usize = OPT + OPT_SIZE;
const SECTION_SIZE: usize = 40;
/// The export directory, inside the headers.
const EXPORTS: usize = 0x200;
const ALIGN: usize = 0x200;
/// Name of the section that holds the manifest.
pub const MANIFEST_SECTION: &[u8; 8] = b".hvlab\0\0";
/// A fixed link time (2026-01-01T00:00:00Z): sim images are reproducible builds.
pub const TIME_DATE_STAMP: u32 = 1_767_225_600;

/// Image size of ebpfcore.sys.
pub(crate) const CORE_IMAGE_SIZE: u64 = 0x8_6000;
/// Image size of the sample driver.
pub(crate) const SAMPLE_IMAGE_SIZE: u64 = 0x2_4000;

/// Size of the image the kernel maps for a built-in driver.
pub fn image_size(kind: ImageKind) -> u64 {
    match kind {
        ImageKind::EbpfCore => CORE_IMAGE_SIZE,
        ImageKind::SampleExt => SAMPLE_IMAGE_SIZE,
    }
}

/// The functions of a built-in driver with their RVAs, as the kernel places them.
pub fn image_exports(kind: ImageKind) -> Vec<(&'static str, u32)> {
    let functions = match kind {
        ImageKind::EbpfCore => modules::CORE_FUNCTIONS,
        ImageKind::SampleExt => modules::SAMPLE_FUNCTIONS,
    };
    let m = Module {
        name: String::new(),
        base: 0,
        size: image_size(kind),
    };
    functions
        .iter()
        .map(|f| (*f, modules::function_address(&m, f) as u32))
        .collect()
}

fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn get16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn get32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn round_up(n: usize, to: usize) -> usize {
    n.div_ceil(to) * to
}

/// The PE file of driver `file_name` (e.g. `sample_ext.sys`) for a built-in image, with
/// `manifest` (the JSON) in its `.hvlab` section.
pub fn driver_file(file_name: &str, kind: ImageKind, manifest: &[u8]) -> Vec<u8> {
    let size = image_size(kind) as u32;
    let mut exports = image_exports(kind);
    // Sorted by name, as the loader's binary search over AddressOfNames needs.
    exports.sort_by(|a, b| a.0.cmp(b.0));
    let n = exports.len();
    let functions = EXPORTS + 0x28;
    let names = functions + 4 * n;
    let ordinals = names + 4 * n;
    let image_name = ordinals + 2 * n;
    let end =
        image_name + file_name.len() + 1 + exports.iter().map(|e| e.0.len() + 1).sum::<usize>();
    let headers = round_up(end, ALIGN);
    let raw = round_up(manifest.len().max(1), ALIGN);
    let mut b = vec![0u8; headers + raw];
    b[0..2].copy_from_slice(b"MZ");
    put32(&mut b, 0x3C, NT as u32);
    b[NT..NT + 4].copy_from_slice(b"PE\0\0");
    put16(&mut b, NT + 4, 0x8664); // AMD64
    put16(&mut b, NT + 6, 1); // one section
    put32(&mut b, NT + 8, TIME_DATE_STAMP);
    put16(&mut b, NT + 0x14, OPT_SIZE as u16);
    put16(&mut b, NT + 0x16, 0x22); // executable, large-address aware
    put16(&mut b, OPT, 0x20B); // PE32+
    let entry = exports
        .iter()
        .find(|e| e.0 == "DriverEntry")
        .map_or(0, |e| e.1);
    put32(&mut b, OPT + 0x10, entry);
    put32(&mut b, OPT + 0x20, 0x1000); // SectionAlignment
    put32(&mut b, OPT + 0x24, ALIGN as u32); // FileAlignment
    put16(&mut b, OPT + 0x30, 10); // subsystem version
    put32(&mut b, OPT + 0x38, size); // SizeOfImage: what MmUnloadedDrivers' range spans
    put32(&mut b, OPT + 0x3C, headers as u32);
    put16(&mut b, OPT + 0x44, 1); // IMAGE_SUBSYSTEM_NATIVE
    put32(&mut b, OPT + 0x6C, 16);
    put32(&mut b, OPT + 0x70, EXPORTS as u32);
    put32(&mut b, OPT + 0x74, (end - EXPORTS) as u32);
    // The manifest section in the image's last page, past every function address.
    let s = SECTIONS;
    b[s..s + 8].copy_from_slice(MANIFEST_SECTION);
    put32(&mut b, s + 8, manifest.len() as u32);
    put32(&mut b, s + 12, size - 0x1000);
    put32(&mut b, s + 16, raw as u32);
    put32(&mut b, s + 20, headers as u32);
    put32(&mut b, s + 36, 0x4000_0040); // initialised data, read
    // IMAGE_EXPORT_DIRECTORY.
    put32(&mut b, EXPORTS + 4, TIME_DATE_STAMP);
    put32(&mut b, EXPORTS + 0xC, image_name as u32);
    put32(&mut b, EXPORTS + 0x10, 1);
    put32(&mut b, EXPORTS + 0x14, n as u32);
    put32(&mut b, EXPORTS + 0x18, n as u32);
    put32(&mut b, EXPORTS + 0x1C, functions as u32);
    put32(&mut b, EXPORTS + 0x20, names as u32);
    put32(&mut b, EXPORTS + 0x24, ordinals as u32);
    b[image_name..image_name + file_name.len()].copy_from_slice(file_name.as_bytes());
    let mut at = image_name + file_name.len() + 1;
    for (i, (name, rva)) in exports.iter().enumerate() {
        put32(&mut b, functions + 4 * i, *rva);
        put32(&mut b, names + 4 * i, at as u32);
        put16(&mut b, ordinals + 2 * i, i as u16);
        b[at..at + name.len()].copy_from_slice(name.as_bytes());
        at += name.len() + 1;
    }
    b[headers..headers + manifest.len()].copy_from_slice(manifest);
    b
}

/// The manifest in a PE driver file's `.hvlab` section; `None` if the file is not a PE
/// image with that section (the caller then reports a manifest error).
pub(crate) fn manifest_section(b: &[u8]) -> Option<&[u8]> {
    if b.get(..2)? != b"MZ" {
        return None;
    }
    let nt = get32(b, 0x3C)? as usize;
    if b.get(nt..nt + 4)? != b"PE\0\0" {
        return None;
    }
    let count = usize::from(get16(b, nt + 6)?);
    let table = nt + 0x18 + usize::from(get16(b, nt + 0x14)?);
    (0..count).find_map(|i| {
        let s = table + i * SECTION_SIZE;
        if b.get(s..s + 8)? != MANIFEST_SECTION {
            return None;
        }
        let len = get32(b, s + 8)? as usize;
        let at = get32(b, s + 20)? as usize;
        b.get(at..at.checked_add(len)?)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::DriverImage;
    use std::path::PathBuf;

    fn sim_build() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../driver-payloads/sim-build")
    }

    #[test]
    fn a_driver_file_round_trips_its_manifest_and_exports() {
        let manifest =
            br#"{"format": "hvlab-sim-driver/1", "image": "sample_ext", "signature": "test"}"#;
        let b = driver_file("sample_ebpf_ext.sys", ImageKind::SampleExt, manifest);
        assert_eq!(manifest_section(&b), Some(&manifest[..]));
        let img = DriverImage::parse(&b).unwrap();
        assert_eq!(img.image, ImageKind::SampleExt);
        assert_eq!(get32(&b, OPT + 0x38), Some(0x2_4000));
        // Every export lies in the image, below the manifest's page.
        for (_, rva) in image_exports(ImageKind::SampleExt) {
            assert!((0x1000..0x2_3000).contains(&rva), "{rva:#x}");
        }
        assert_eq!(manifest_section(b"MZ"), None);
        assert_eq!(manifest_section(b"not a pe"), None);
    }

    /// The payload's driver files are these PE images (regenerate them after changing a
    /// built-in image's functions or size with `HVLAB_BLESS=1 cargo test -p sim-kernel
    /// payload_driver_files`, then update the sha256 lines of driver-payloads/sim-ebpf.yaml).
    #[test]
    fn payload_driver_files_carry_the_kernels_exports() {
        let bless = std::env::var_os("HVLAB_BLESS").is_some();
        let mut seen = 0;
        for e in std::fs::read_dir(sim_build()).unwrap() {
            let path = e.unwrap().path();
            if path.extension().is_none_or(|x| x != "sys") {
                continue;
            }
            seen += 1;
            let bytes = std::fs::read(&path).unwrap();
            let manifest = manifest_section(&bytes).unwrap_or(&bytes).to_vec();
            let kind = DriverImage::parse(&manifest).unwrap().image;
            let name = path.file_name().unwrap().to_str().unwrap();
            let want = driver_file(name, kind, &manifest);
            if bless {
                std::fs::write(&path, &want).unwrap();
            } else {
                assert!(
                    bytes == want,
                    "{name} is not the PE image of its manifest (see this test's docs)"
                );
            }
        }
        assert!(seen >= 2, "no driver files in {}", sim_build().display());
    }
}
