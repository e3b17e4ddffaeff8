//! hvlab's VMs across hosts: listing them by the tag in their Notes (with the lease that
//! says whether their run still lives), removing them for `hvlab lab gc`, and renewing the
//! leases of this process's VMs while it runs.

use std::sync::Weak;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::HyperV;
use super::error::PsError;
use super::host::call;
use super::lease::{self, LEASE_TERM, Lease, RENEW_EVERY};
use super::parse::{self, List, VmInfo, VmTag};
use super::scripts::host as hs;
use super::vm::Inner;
use crate::model::{OwnedVm, VmState};
use crate::process;

impl HyperV {
    /// hvlab's VMs on each host, in lab-file order: one host that cannot be listed does not
    /// hide the others.
    pub async fn list_owned_by_host(&self) -> Vec<Result<Vec<OwnedVm>, PsError>> {
        let now = lease::now_unix();
        let here = lease::this_host();
        let mut out = Vec::new();
        for (i, host) in self.inner.hosts.iter().enumerate() {
            let timeout = self.inner.config.timing.op_timeout;
            let listed = call::<List<VmInfo>, _>(&**host, &hs::list_owned(), timeout).await;
            let name = &self.inner.config.hosts[i].name;
            out.push(listed.map(|l| {
                l.0.into_iter()
                    .map(|v| owned(v, name, now, &here))
                    .collect()
            }));
        }
        out
    }

    /// Removes an hvlab VM from host `i` (by name; the host script refuses an untagged VM).
    pub async fn remove_owned(&self, i: usize, vm: &str) -> Result<(), PsError> {
        let script = hs::remove(vm, &self.inner.config.hosts[i].vm_dir);
        call::<serde_json::Value, _>(
            &*self.inner.hosts[i],
            &script,
            self.inner.config.timing.op_timeout,
        )
        .await
        .map(|_| ())
    }

    /// Starts renewing this process's leases (once; the task ends when the backend is
    /// dropped).
    pub(super) fn start_renewing(&self) {
        if self.inner.renewing.swap(true, Ordering::SeqCst) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        rt.spawn(renew_loop(
            std::sync::Arc::downgrade(&self.inner),
            RENEW_EVERY,
        ));
    }

    /// Renews the lease of every VM this process created now.
    pub async fn renew_leases(&self) {
        let tags: Vec<(String, VmTag)> = self
            .inner
            .tags
            .lock()
            .expect("tag lock")
            .iter()
            .map(|(n, t)| (n.clone(), t.clone()))
            .collect();
        for (vm, mut tag) in tags {
            let Some((i, _)) = self.placed(&vm) else {
                continue;
            };
            tag.lease = Some(Lease::mine(LEASE_TERM));
            let script = hs::set_notes(&vm, &tag.notes());
            let timeout = self.inner.config.timing.op_timeout;
            if let Err(e) = call::<serde_json::Value, _>(self.host(i), &script, timeout).await {
                tracing::warn!(vm = %vm, "could not renew the lease: {}", lab_error::Chain(&e));
            }
        }
    }
}

async fn renew_loop(inner: Weak<Inner>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        HyperV { inner }.renew_leases().await;
    }
}

/// A listed VM as the backend contract reports it.
fn owned(v: VmInfo, host: &str, now: u64, here: &str) -> OwnedVm {
    let tag = v.notes.as_deref().and_then(VmTag::from_notes);
    let lease = tag.as_ref().and_then(|t| t.lease.clone());
    let age = v
        .created
        .as_deref()
        .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
        .and_then(|c| {
            (chrono::Utc::now() - c.with_timezone(&chrono::Utc))
                .to_std()
                .ok()
        });
    OwnedVm {
        state: parse::vm_state(&v.state).unwrap_or(VmState::Off),
        run_id: tag.as_ref().map(|t| t.run_id.clone()).unwrap_or_default(),
        template: tag.map(|t| t.template).unwrap_or_default(),
        name: v.name,
        // No lease (an hvlab before leases, or damaged notes): nobody renews it.
        owner_alive: Some(
            lease
                .as_ref()
                .is_some_and(|l| l.held(now, here, process::pid_alive)),
        ),
        host: Some(host.to_owned()),
        owner: lease.map(|l| l.describe()),
        age,
    }
}
