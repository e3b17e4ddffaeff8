//! `hvlab lab status` and `hvlab lab gc`: the VMs hvlab created, on the simulated lab or on
//! every host of a Hyper-V lab (`--lab`), and removal of those a dead run left behind. On
//! Hyper-V a VM's run is alive while the lease in its Notes is (renewed by the run, so this
//! works from any machine); `--older-than` overrides a lease; untagged VMs are never listed.

use std::path::Path;
use std::time::Duration;

use lab_backends::hyperv::HyperV;
use lab_backends::{Hypervisor, OwnedVm};
use lab_config::{LabBackend, ValidateRequest, validate};

use crate::cli::{LabArgs, LabCommand};
use crate::error::CliError;
use crate::settings::EnvSettings;
use crate::{backend, exit};

/// Runs `hvlab lab ...`.
pub fn run(root: &Path, args: &LabArgs, env: &EnvSettings) -> Result<u8, CliError> {
    let lab = match &args.lab {
        None => None,
        Some(p) => {
            let path = crate::commands::run::lab_path(root, Some(p))?;
            let v = validate(&ValidateRequest {
                labs: vec![path.clone()],
                payloads: vec![],
                scenarios: vec![],
                lab: None,
                default_lab: None,
                explicit_scenarios: false,
                payload: None,
            })
            .map_err(CliError::Config)?;
            v.labs.into_iter().next()
        }
    };
    match lab {
        Some(lab) if matches!(lab.backend, LabBackend::HyperV(_)) => hyperv(&lab, args, env),
        _ => sim(args, env),
    }
}

fn owner(vm: &OwnedVm) -> String {
    let alive = match vm.owner_alive {
        Some(true) => "run in progress",
        Some(false) => "orphaned (its run has ended)",
        None => "owner unknown",
    };
    match &vm.owner {
        Some(o) => format!("{alive}; {o}"),
        None => alive.to_owned(),
    }
}

/// What `gc` removes: VMs whose run has ended, all with `--all`, and those older than
/// `--older-than` whatever their lease.
fn removable(vm: &OwnedVm, all: bool, older_than: Option<Duration>) -> bool {
    all || vm.owner_alive != Some(true)
        || older_than.is_some_and(|d| vm.age.is_some_and(|age| age > d))
}

fn hyperv(lab: &lab_config::Lab, args: &LabArgs, env: &EnvSettings) -> Result<u8, CliError> {
    let lab_backends::AnyHypervisor::HyperV(hv) = backend::connect(lab, env)? else {
        return Err(CliError::infra_msg(format!(
            "connect to lab `{}`: not a Hyper-V backend",
            lab.name
        )));
    };
    let rt = crate::runtime(false)?;
    let (lines, failed) = rt.block_on(on_hosts(&hv, &args.command));
    for l in lines {
        println!("{l}");
    }
    if matches!(args.command, LabCommand::Gc { dry_run: false, .. }) {
        println!("(lab `{}`)", lab.name);
    }
    if failed.is_empty() {
        Ok(exit::SUCCESS)
    } else {
        Err(CliError::infra_msg(failed.join("; ")))
    }
}

/// `status` or `gc` on every host of a Hyper-V lab: the lines to print and what failed.
/// A host that cannot be reached is a failure; the other hosts are still handled.
async fn on_hosts(hv: &HyperV, command: &LabCommand) -> (Vec<String>, Vec<String>) {
    let names: Vec<String> = hv.config().hosts.iter().map(|h| h.name.clone()).collect();
    let (mut out, mut failed) = (Vec::new(), Vec::new());
    let mut removed = 0;
    for (i, listed) in hv.list_owned_by_host().await.into_iter().enumerate() {
        let host = &names[i];
        let vms = match listed {
            Ok(v) => v,
            Err(e) => {
                failed.push(format!("list the VMs on {host}: {}", lab_error::Chain(&e)));
                continue;
            }
        };
        match command {
            LabCommand::Status => {
                if vms.is_empty() {
                    out.push(format!("{host}: no hvlab VMs"));
                }
                for vm in &vms {
                    out.push(format!(
                        "{host}: {}  run {}  template {}  {:?}  {}",
                        vm.name,
                        vm.run_id,
                        vm.template,
                        vm.state,
                        owner(vm)
                    ));
                }
            }
            LabCommand::Gc {
                all,
                dry_run,
                older_than,
            } => {
                for vm in vms.iter().filter(|v| removable(v, *all, *older_than)) {
                    if *dry_run {
                        out.push(format!(
                            "would remove {host}: {} (run {})",
                            vm.name, vm.run_id
                        ));
                        continue;
                    }
                    match hv.remove_owned(i, &vm.name).await {
                        Ok(()) => {
                            removed += 1;
                            out.push(format!("removed {host}: {} (run {})", vm.name, vm.run_id));
                        }
                        Err(e) => failed.push(format!(
                            "remove {} from {host}: {}",
                            vm.name,
                            lab_error::Chain(&e)
                        )),
                    }
                }
            }
        }
    }
    if matches!(command, LabCommand::Gc { dry_run: false, .. }) {
        out.push(format!("{removed} VM(s) removed"));
    }
    (out, failed)
}

fn sim(args: &LabArgs, env: &EnvSettings) -> Result<u8, CliError> {
    let hv = backend::sim(env)?;
    let rt = crate::runtime(false)?;
    rt.block_on(async {
        let vms = hv
            .list_owned()
            .await
            .map_err(|e| CliError::infra("list the lab's VMs", e))?;
        match &args.command {
            LabCommand::Status => {
                if vms.is_empty() {
                    println!("no hvlab VMs under {}", hv.root().display());
                }
                for vm in &vms {
                    println!(
                        "{}  run {}  template {}  {:?}  {}",
                        vm.name,
                        vm.run_id,
                        vm.template,
                        vm.state,
                        owner(vm)
                    );
                }
                Ok(exit::SUCCESS)
            }
            LabCommand::Gc {
                all,
                dry_run,
                older_than,
            } => {
                let mut failed = Vec::new();
                let mut removed = 0;
                for vm in vms.iter().filter(|v| removable(v, *all, *older_than)) {
                    if *dry_run {
                        println!("would remove {} (run {})", vm.name, vm.run_id);
                        continue;
                    }
                    match hv.remove_on_disk(&vm.name) {
                        Ok(()) => {
                            removed += 1;
                            println!("removed {} (run {})", vm.name, vm.run_id);
                        }
                        Err(e) => failed.push(format!("{}: {e}", vm.name)),
                    }
                }
                if !*dry_run {
                    println!("{removed} VM(s) removed from {}", hv.root().display());
                }
                if failed.is_empty() {
                    Ok(exit::SUCCESS)
                } else {
                    Err(CliError::infra_msg(format!(
                        "remove leftover VMs: {}",
                        failed.join("; ")
                    )))
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use lab_backends::VmState;

    fn vm(alive: Option<bool>, age_h: Option<u64>) -> OwnedVm {
        OwnedVm {
            name: "v".into(),
            run_id: "r".into(),
            template: "t".into(),
            state: VmState::Running,
            owner_alive: alive,
            host: None,
            owner: None,
            age: age_h.map(|h| Duration::from_secs(h * 3600)),
        }
    }

    #[test]
    fn a_live_lease_holds_unless_all_or_older_than_overrides() {
        let h12 = Some(Duration::from_secs(12 * 3600));
        assert!(!removable(&vm(Some(true), Some(1)), false, None));
        assert!(!removable(&vm(Some(true), Some(1)), false, h12));
        assert!(removable(&vm(Some(true), Some(13)), false, h12));
        assert!(!removable(&vm(Some(true), None), false, h12), "age unknown");
        assert!(removable(&vm(Some(true), Some(1)), true, None));
        assert!(removable(&vm(Some(false), Some(1)), false, None));
    }

    mod scripted {
        use lab_backends::hyperv::fake::{ExecBehavior, FakeLab};
        use lab_backends::hyperv::lease::{self, Lease};
        use lab_backends::hyperv::parse::VmTag;
        use lab_backends::hyperv::{HyperV, ScriptedHost, fixture};

        use super::super::on_hosts;
        use crate::cli::LabCommand;

        fn notes(run: &str, expires: Option<u64>) -> String {
            VmTag {
                hvlab: 1,
                run_id: run.into(),
                template: "ws2022".into(),
                lease: expires.map(|e| Lease {
                    owner_host: "orchestrator-on-another-machine".into(),
                    owner_pid: 1,
                    expires_unix: e,
                }),
            }
            .notes()
        }

        /// Two scripted hosts: hv1 with an untagged VM, a live-lease VM and an expired one;
        /// hv2 unreachable.
        fn lab() -> (HyperV, FakeLab) {
            let fake = FakeLab::new(|_, _| ExecBehavior::Exit {
                code: 0,
                stdout: String::new(),
                files: vec![],
            });
            let now = lease::now_unix();
            fake.add_vm("build-agent", "not hvlab's");
            fake.add_vm("hvlab-live", &notes("r-live", Some(now + 600)));
            fake.add_vm("hvlab-expired", &notes("r-dead", Some(now - 60)));
            let down = FakeLab::new(|_, _| ExecBehavior::Bugcheck(0));
            down.go_offline();
            let config = fixture::config(&["hv1", "hv2"]);
            let hosts = vec![
                ScriptedHost::new("hv1", fake.responder()),
                ScriptedHost::new("hv2", down.responder()),
            ];
            (fixture::backend(config, hosts), fake)
        }

        #[tokio::test]
        async fn gc_removes_only_expired_leases_and_names_the_unreachable_host() {
            let (hv, fake) = lab();
            let gc = LabCommand::Gc {
                all: false,
                dry_run: false,
                older_than: None,
            };
            let (out, failed) = on_hosts(&hv, &gc).await;
            assert_eq!(
                out,
                ["removed hv1: hvlab-expired (run r-dead)", "1 VM(s) removed"]
            );
            assert_eq!(
                fake.vms(),
                ["build-agent", "hvlab-live"],
                "untagged and live survive"
            );
            assert_eq!(failed.len(), 1, "{failed:?}");
            assert!(
                failed[0].starts_with("list the VMs on hv2: vm.list_owned on hv2"),
                "{failed:?}"
            );
        }

        #[tokio::test]
        async fn status_shows_each_vm_with_its_owner_and_older_than_overrides_a_lease() {
            let (hv, fake) = lab();
            let (out, _) = on_hosts(&hv, &LabCommand::Status).await;
            assert_eq!(out.len(), 2, "{out:?}");
            assert!(out[0].starts_with("hv1: hvlab-expired  run r-dead  template ws2022  Running  orphaned (its run has ended); orchestrator-on-another-machine pid 1, lease until "), "{out:?}");
            assert!(
                out[1].contains("hvlab-live  run r-live") && out[1].contains("run in progress"),
                "{out:?}"
            );
            // The fake host says every VM was created in 2025: older than a day.
            let gc = LabCommand::Gc {
                all: false,
                dry_run: false,
                older_than: Some(std::time::Duration::from_secs(86_400)),
            };
            on_hosts(&hv, &gc).await;
            assert_eq!(fake.vms(), ["build-agent"], "never touches an untagged VM");
        }
    }
}
