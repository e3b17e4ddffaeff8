//! Small (DumpType 4, "triage") dumps: the header plus a `TRIAGE_DUMP64` with the context,
//! the exception record, the unloaded-driver list and the loaded-driver list, as
//! `Minidump\*.dmp` holds them.

use super::Image;
use crate::format::{self, dump_type, hdr, ldr, put_u32, put_u64, triage, triage_unloaded as tu};
use crate::spec::DumpSpec;

pub fn build(spec: &DumpSpec, mut header: Vec<u8>) -> Image {
    let base = format::HEADER_SIZE;
    let context_at = base + triage::SIZE;
    let exception_at = context_at + format::ctx::SIZE;
    // Newest first and at most 50, names cut to 12 UTF-16 units, as Windows writes them.
    let unloaded_at = (exception_at + 0x98).next_multiple_of(8);
    let unloaded: Vec<_> = spec.unloaded.iter().rev().take(tu::MAX).collect();
    let drivers_at = unloaded_at + tu::ENTRIES + tu::SIZE * unloaded.len();
    let pool_at = drivers_at + triage::DRIVER_ENTRY_SIZE * spec.modules.len();

    // String pool: DUMP_STRING { Length (bytes, without the NUL); WCHAR Buffer[] + NUL }.
    let mut pool = Vec::new();
    let mut name_offsets = Vec::with_capacity(spec.modules.len());
    for module in &spec.modules {
        name_offsets.push(pool_at + pool.len());
        let name: Vec<u8> = module
            .name
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        pool.extend_from_slice(&(name.len() as u32).to_le_bytes());
        pool.extend_from_slice(&name);
        pool.extend_from_slice(&[0, 0]);
        while pool.len() % 4 != 0 {
            pool.push(0);
        }
    }
    let valid_at = pool_at + pool.len();
    let len = valid_at + 4;

    let mut body = vec![0u8; len - base];
    let t = |at: usize| at - base;
    put_u32(&mut body, triage::SERVICE_PACK_BUILD, 0);
    put_u32(&mut body, triage::SIZE_OF_DUMP, len as u32);
    put_u32(&mut body, triage::VALID_OFFSET, valid_at as u32);
    put_u32(&mut body, triage::CONTEXT_OFFSET, context_at as u32);
    put_u32(&mut body, triage::EXCEPTION_OFFSET, exception_at as u32);
    put_u32(
        &mut body,
        triage::UNLOADED_DRIVERS_OFFSET,
        unloaded_at as u32,
    );
    put_u32(&mut body, triage::DRIVER_LIST_OFFSET, drivers_at as u32);
    put_u32(&mut body, triage::DRIVER_COUNT, spec.modules.len() as u32);
    put_u32(&mut body, triage::STRING_POOL_OFFSET, pool_at as u32);
    put_u32(&mut body, triage::STRING_POOL_SIZE, pool.len() as u32);
    let broken = spec
        .modules
        .iter()
        .position(|m| m.contains(spec.rip))
        .map_or(0, |i| drivers_at + i * triage::DRIVER_ENTRY_SIZE);
    put_u32(&mut body, triage::BROKEN_DRIVER_OFFSET, broken as u32);
    put_u32(&mut body, triage::TRIAGE_OPTIONS, triage::OPTIONS);

    let context = super::context_record(spec);
    body[t(context_at)..t(context_at) + context.len()].copy_from_slice(&context);
    let exception = &header[hdr::EXCEPTION_RECORD..hdr::EXCEPTION_RECORD + 0x98];
    body[t(exception_at)..t(exception_at) + 0x98].copy_from_slice(exception);

    put_u32(&mut body, t(unloaded_at), unloaded.len() as u32);
    for (i, u) in unloaded.iter().enumerate() {
        let at = t(unloaded_at + tu::ENTRIES + i * tu::SIZE);
        let name: Vec<u8> = u
            .name
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .take(tu::NAME_BYTES)
            .collect();
        body[at + tu::NAME_LENGTH..at + tu::NAME_LENGTH + 2]
            .copy_from_slice(&(name.len() as u16).to_le_bytes());
        body[at + 2..at + 4].copy_from_slice(&(tu::NAME_BYTES as u16).to_le_bytes());
        // Where the name was in the kernel's dump buffer: any kernel address will do.
        put_u64(
            &mut body,
            at + tu::NAME_BUFFER,
            0xFFFF_F800_0000_0000 + (at + tu::NAME) as u64,
        );
        body[at + tu::NAME..at + tu::NAME + name.len()].copy_from_slice(&name);
        put_u64(&mut body, at + tu::START, u.base);
        put_u64(&mut body, at + tu::END, u.base + u64::from(u.size));
    }
    for (i, module) in spec.modules.iter().enumerate() {
        let at = t(drivers_at + i * triage::DRIVER_ENTRY_SIZE);
        put_u32(&mut body, at, name_offsets[i] as u32);
        let e = at + triage::DRIVER_ENTRY_LDR;
        put_u64(&mut body, e + ldr::DLL_BASE, module.base);
        put_u64(&mut body, e + ldr::ENTRY_POINT, module.base + 0x1000);
        put_u32(&mut body, e + ldr::SIZE_OF_IMAGE, module.size);
    }
    body[t(pool_at)..t(pool_at) + pool.len()].copy_from_slice(&pool);
    body[t(valid_at)..t(valid_at) + 4].copy_from_slice(triage::VALID_MARKER);

    put_u32(&mut header, hdr::DUMP_TYPE, dump_type::TRIAGE);
    put_u64(&mut header, hdr::REQUIRED_DUMP_SPACE, len as u64);
    // A triage dump carries no physical memory.
    let pm = hdr::PHYSICAL_MEMORY_BLOCK;
    header[pm..pm + hdr::PHYSICAL_MEMORY_BLOCK_SIZE].fill(0);
    Image {
        chunks: vec![(0, header), (base as u64, body)],
        len: len as u64,
    }
}
