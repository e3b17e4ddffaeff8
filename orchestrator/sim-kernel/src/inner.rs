//! The booted kernel's context as the drivers see it (`KernelInner`): the maps layer's
//! context (`maps::MapContext`: the lower context `base::KernelBase`, NMR and the map
//! registry) plus the hook side and the service table. Driver code is handed `&KernelInner`.

use std::ops::Deref;
use std::sync::Arc;

use crate::base::KernelBase;
use crate::config::KernelConfig;
use crate::hook::Hooks;
use crate::maps::MapContext;
use crate::nmr::Nmr;
use crate::provider::MapProvider;
use crate::services::Services;

pub(crate) use crate::base::{Event, HALT_POLL};

/// Shared state of one booted kernel.
#[derive(Debug)]
pub(crate) struct KernelInner {
    /// Shared with map handles and the map teardown work items, which need nothing above
    /// it (its base is shared with the epoch timer's thread).
    pub(crate) maps_ctx: Arc<MapContext>,
    pub(crate) hooks: Arc<Hooks>,
    pub(crate) services: Services,
}

impl KernelInner {
    pub(crate) fn new(config: KernelConfig) -> KernelInner {
        let base = Arc::new(KernelBase::new(config));
        let nmr: Arc<Nmr<dyn MapProvider>> = Arc::new(Nmr::default());
        let hooks = Arc::new(Hooks::default());
        // A halt must end their deregistration and detach waits.
        base.register_halt_wake(nmr.clone());
        base.register_halt_wake(hooks.clone());
        KernelInner {
            maps_ctx: Arc::new(MapContext::new(base, nmr)),
            services: Services::default(),
            hooks,
        }
    }
}

/// Driver code reaches the layers below through its `&KernelInner` (`k.nmr`, `k.maps`, and
/// through the maps context's own deref the lower primitives: `k.allocate`, `k.raise`), as
/// driver code calls the kernel below it. Each context extends the one below it.
impl Deref for KernelInner {
    type Target = MapContext;

    fn deref(&self) -> &MapContext {
        &self.maps_ctx
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::bounded;
    use crate::modules::ModuleId;
    use crate::nmr::{Cancelled, Rundown};
    use crate::pool::OwnerId;
    use crate::provider::Registration;
    use crate::sample_ext::SampleExt;
    use std::sync::atomic::AtomicBool;

    /// Rule: a bugcheck raised in the lower context ends NMR's deregistration waits and the
    /// hook side's detach waits, which that context does not name: they registered.
    #[test]
    fn a_bugcheck_ends_the_waits_of_the_layers_that_registered() {
        let k = Arc::new(KernelInner::new(KernelConfig::default()));
        let reg = Arc::new(Registration {
            map_type: 15,
            provider: Arc::new(SampleExt::new(&k, ModuleId(1), OwnerId(1), vec![])),
            module: ModuleId(1),
            module_loaded: Arc::new(AtomicBool::new(true)),
            rundown: Rundown::default(),
        });
        assert!(k.nmr.register(reg.clone()));
        assert!(reg.rundown.acquire(), "a live map holds the provider");
        k.nmr.begin_deregister(&reg);
        let client = Arc::new(Rundown::default());
        k.hooks.track(&client);
        assert!(client.acquire(), "an invocation holds the client");
        let waits = [
            std::thread::spawn(move || reg.rundown.wait_for_release()),
            std::thread::spawn(move || client.wait_for_release()),
        ];
        k.raise(0x50, [0; 4], None, "KeBugCheckEx", "test".into());
        for w in waits {
            assert_eq!(bounded::join("a wait the halt must end", w), Err(Cancelled));
        }
    }
}
