//! The memory one call may use (P6): every linear memory and table of the
//! instance counted together, plus what the host allocates on the plugin's
//! behalf (wasi-http header fields), against one limit; and a cap on the
//! resources a call may hold in its table.

use super::sandbox::StoreState;
use wasmtime::component::{Linker, Resource};
use wasmtime::{ResourceLimiter, StoreContextMut};
use wasmtime_wasi_http::p2::bindings::http::types::{HeaderError, HostFields};
use wasmtime_wasi_http::{FieldMap, WasiHttpView};

/// The `wasi:http/types` instance wasmtime-wasi-http 48 defines.
const HTTP_TYPES: &str = "wasi:http/types@0.2.12";

/// What one table element costs the host (wasmtime stores a pointer).
const TABLE_ELEMENT_BYTES: usize = std::mem::size_of::<usize>();

/// Most elements one table may grow to, whatever the memory limit.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

/// What the host charges for one fields resource beyond its content: the
/// map, its table entry.
pub const FIELDS_OVERHEAD: usize = 256;

/// What the host charges per header beyond its name and value.
pub const FIELD_OVERHEAD: usize = 64;

/// Most resources (descriptors, streams, pollables, fields, requests...) one
/// call may hold at once. A connector needs a few dozen.
pub const MAX_RESOURCES: usize = 4096;

/// Most bytes one fields resource may hold (wasmtime-wasi-http's own limit,
/// lowered from its 128 KiB default: an ERP's headers are a few KiB).
pub const FIELD_SIZE_LIMIT: usize = 64 << 10;

/// The memory limit of one call: the sum over all its memories and tables
/// and the host's allocations for it. Remembers that it refused, so that the
/// resulting trap is reported as the limit rather than a plugin crash.
pub(crate) struct CallLimiter {
    limit: usize,
    used: usize,
    /// The growth last allowed, taken back if wasmtime then fails it.
    allowed: usize,
    pub(crate) hit: bool,
}

impl CallLimiter {
    pub(crate) fn new(limit: usize) -> Self {
        CallLimiter {
            limit,
            used: 0,
            allowed: 0,
            hit: false,
        }
    }

    /// Charges `bytes`; false (and remembered) when they do not fit.
    pub(crate) fn charge(&mut self, bytes: usize) -> bool {
        match self.used.checked_add(bytes) {
            Some(total) if total <= self.limit => {
                self.used = total;
                self.allowed = bytes;
                true
            }
            _ => {
                self.hit = true;
                false
            }
        }
    }

    fn take_back(&mut self) {
        self.used -= self.allowed;
        self.allowed = 0;
    }
}

impl ResourceLimiter for CallLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(self.charge(desired.saturating_sub(current)))
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.take_back();
        Ok(())
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            return Ok(false);
        }
        let more = desired.saturating_sub(current);
        Ok(self.charge(more.saturating_mul(TABLE_ELEMENT_BYTES)))
    }

    fn table_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.take_back();
        Ok(())
    }
}

/// The trap raised when a host allocation does not fit in the memory limit.
#[derive(Debug)]
pub(crate) struct HostMemoryExceeded(pub(crate) usize);

impl std::fmt::Display for HostMemoryExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the plugin asked the host for {} more bytes of header fields than its memory limit allows",
            self.0
        )
    }
}

impl std::error::Error for HostMemoryExceeded {}

fn charge(store: &mut StoreContextMut<'_, StoreState>, bytes: usize) -> wasmtime::Result<()> {
    if store.data_mut().limiter.charge(bytes) {
        Ok(())
    } else {
        Err(wasmtime::Error::new(HostMemoryExceeded(bytes)))
    }
}

fn header_bytes(name: &str, values: &[Vec<u8>]) -> usize {
    values
        .iter()
        .map(|v| name.len() + v.len() + FIELD_OVERHEAD)
        .sum()
}

fn fields_bytes(f: &FieldMap) -> usize {
    FIELDS_OVERHEAD
        + f.iter()
            .map(|(k, v)| k.as_str().len() + v.len() + FIELD_OVERHEAD)
            .sum::<usize>()
}

fn lift<T>(
    r: Result<T, wasmtime_wasi_http::p2::HeaderError>,
) -> wasmtime::Result<(Result<T, HeaderError>,)> {
    match r {
        Ok(v) => Ok((Ok(v),)),
        Err(e) => Ok((Err(e.downcast()?),)),
    }
}

/// Shadows the `wasi:http/types` functions that make the host allocate
/// header fields, charging what they allocate to the call's memory limit
/// before allocating it. Charges are not taken back when a fields resource
/// is dropped: the bound is on what a call makes the host allocate.
pub(crate) fn add_to_linker(linker: &mut Linker<StoreState>) -> wasmtime::Result<()> {
    let mut i = linker.instance(HTTP_TYPES)?;
    i.func_wrap(
        "[constructor]fields",
        |mut store: StoreContextMut<'_, StoreState>, (): ()| {
            charge(&mut store, FIELDS_OVERHEAD)?;
            Ok((HostFields::new(&mut store.data_mut().http())?,))
        },
    )?;
    i.func_wrap(
        "[static]fields.from-list",
        |mut store: StoreContextMut<'_, StoreState>, (entries,): (Vec<(String, Vec<u8>)>,)| {
            let bytes = FIELDS_OVERHEAD
                + entries
                    .iter()
                    .map(|(n, v)| n.len() + v.len() + FIELD_OVERHEAD)
                    .sum::<usize>();
            charge(&mut store, bytes)?;
            lift(HostFields::from_list(&mut store.data_mut().http(), entries))
        },
    )?;
    i.func_wrap(
        "[method]fields.set",
        |mut store: StoreContextMut<'_, StoreState>,
         (fields, name, values): (Resource<FieldMap>, String, Vec<Vec<u8>>)| {
            charge(&mut store, header_bytes(&name, &values))?;
            lift(HostFields::set(
                &mut store.data_mut().http(),
                fields,
                name,
                values,
            ))
        },
    )?;
    i.func_wrap(
        "[method]fields.append",
        |mut store: StoreContextMut<'_, StoreState>,
         (fields, name, value): (Resource<FieldMap>, String, Vec<u8>)| {
            charge(
                &mut store,
                header_bytes(&name, std::slice::from_ref(&value)),
            )?;
            lift(HostFields::append(
                &mut store.data_mut().http(),
                fields,
                name,
                value,
            ))
        },
    )?;
    i.func_wrap(
        "[method]fields.clone",
        |mut store: StoreContextMut<'_, StoreState>, (fields,): (Resource<FieldMap>,)| {
            let bytes = fields_bytes(store.data_mut().http().table.get(&fields)?);
            charge(&mut store, bytes)?;
            Ok((HostFields::clone(&mut store.data_mut().http(), fields)?,))
        },
    )?;
    Ok(())
}
