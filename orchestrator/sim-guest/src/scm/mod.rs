//! The service control manager: kernel-driver services over sim-kernel, configured in the
//! registry, with the checks and error codes of `sc.exe`.
//!
//! - create: name and path checked, dependencies must not form a cycle (1059), 1073 if it
//!   exists; the driver file need not exist yet (as on Windows).
//! - start: 1060 unknown, 1058 disabled, 1072 marked for delete, 1056 running; dependencies
//!   are started first (1075 missing, 1068 failed); the driver file is read (2 missing,
//!   193 not a sim driver) and loaded (577 signature refused, ...).
//! - stop: 1062 not running, 1061 stop already pending, 1051 running dependents; answers at
//!   once with `stopped` or `stop_pending` (unload waits for the maps' rundown).
//! - delete: removed when stopped, otherwise marked and removed once it has stopped.

mod boot;

use std::collections::{BTreeMap, HashMap};

use sim_kernel::{DriverImage, KernelError};

use crate::disk::DiskError;
use crate::error::{GuestError, GuestResult};
use crate::eventlog::{LEVEL_ERROR, LEVEL_INFORMATION, NewEvent, PROVIDER_SCM};
use crate::guest::GuestCore;
use crate::protocol::{ServiceState, ServiceStatus, StartType, codes};
use crate::registry::{Registry, ServiceEntry};
use crate::winpath::WinPath;

/// Runtime state of the SCM for this boot.
#[derive(Debug, Default)]
pub(crate) struct ScmState {
    /// Win32 exit code of each service's last start attempt.
    last_error: HashMap<String, u32>,
    /// Services started in this boot, in start order (for `memory.json`).
    started: Vec<String>,
}

fn key(name: &str) -> String {
    name.to_lowercase()
}

fn no_such_service(name: &str) -> GuestError {
    GuestError::new(
        codes::ERROR_SERVICE_DOES_NOT_EXIST,
        format!(
            "open service {name}: the specified service does not exist as an installed service"
        ),
    )
}

fn kernel_error(e: &KernelError) -> GuestError {
    let code = match e {
        KernelError::Halted(_) => codes::ERROR_SHUTDOWN_IN_PROGRESS,
        other => other.win32_code().unwrap_or(codes::ERROR_INTERNAL_ERROR),
    };
    GuestError::new(code, e.to_string())
}

fn disk_error(e: &DiskError) -> GuestError {
    GuestError::new(
        codes::ERROR_INTERNAL_ERROR,
        format!("save the registry: {e}"),
    )
}

fn validate_service_name(name: &str) -> GuestResult<()> {
    if name.is_empty()
        || name.chars().count() > 256
        || name.contains(['/', '\\'])
        || name.chars().any(char::is_control)
    {
        return Err(GuestError::new(
            codes::ERROR_INVALID_NAME,
            format!("create service {name:?}: names are 1-256 characters without / or \\"),
        ));
    }
    Ok(())
}

impl GuestCore {
    fn state_of(&self, name: &str) -> ServiceState {
        self.kernel.driver_state(name)
    }

    fn status_of(&self, entry: &ServiceEntry) -> ServiceStatus {
        let state = self.state_of(&entry.name);
        ServiceStatus {
            name: entry.name.clone(),
            state,
            start_type: entry.start_type,
            binary_path: entry.binary_path.clone(),
            depends_on: entry.depends_on.clone(),
            win32_exit_code: self
                .scm
                .lock()
                .last_error
                .get(&key(&entry.name))
                .copied()
                .unwrap_or(0),
            delete_pending: entry.delete_pending,
        }
    }

    fn is_active(&self, name: &str) -> bool {
        matches!(
            self.state_of(name),
            ServiceState::Running | ServiceState::StopPending
        )
    }

    /// `ServiceCreate`.
    pub(crate) fn service_create(
        &self,
        name: &str,
        binary_path: &str,
        start_type: StartType,
        depends_on: &[String],
    ) -> GuestResult<ServiceStatus> {
        validate_service_name(name)?;
        let binary = WinPath::parse(binary_path)?.to_string();
        for dep in depends_on {
            validate_service_name(dep)?;
        }
        let scm_lock = self.scm_guard();
        let entry = ServiceEntry {
            name: name.to_owned(),
            binary_path: binary,
            start_type,
            depends_on: depends_on.to_vec(),
            delete_pending: false,
        };
        let created = self
            .registry
            .update(|reg| {
                if let Some(existing) = reg.service(name) {
                    let code = if existing.delete_pending {
                        codes::ERROR_SERVICE_MARKED_FOR_DELETE
                    } else {
                        codes::ERROR_SERVICE_EXISTS
                    };
                    return Err(GuestError::new(
                        code,
                        format!("create service {name}: the specified service already exists"),
                    ));
                }
                reg.services.insert(key(name), entry.clone());
                if let Some(cycle) = find_cycle(reg, name) {
                    return Err(GuestError::new(
                        codes::ERROR_CIRCULAR_DEPENDENCY,
                        format!(
                            "create service {name}: circular service dependency ({})",
                            cycle.join(" -> ")
                        ),
                    ));
                }
                Ok(())
            })
            .map_err(|e| disk_error(&e))?;
        drop(scm_lock);
        created?;
        let _ = self.events.append(NewEvent {
            event_id: 7045,
            provider: PROVIDER_SCM,
            level: LEVEL_INFORMATION,
            message: format!(
                "A service was installed in the system. Service Name: {name}. Service File \
                 Name: {}. Service Type: kernel mode driver. Service Start Type: {}.",
                entry.binary_path,
                start_type_text(start_type)
            ),
            data: BTreeMap::from([("ServiceName".to_owned(), name.to_owned())]),
        });
        Ok(self.status_of(&entry))
    }

    /// `ServiceStart`.
    pub(crate) fn service_start(&self, name: &str) -> GuestResult<ServiceStatus> {
        let _scm_lock = self.scm_guard();
        let reg = self.registry.snapshot();
        let entry = reg
            .service(name)
            .ok_or_else(|| no_such_service(name))?
            .clone();
        if self.is_active(&entry.name) {
            return Err(GuestError::new(
                codes::ERROR_SERVICE_ALREADY_RUNNING,
                format!(
                    "start service {}: an instance of the service is already running",
                    entry.name
                ),
            ));
        }
        self.start_with_dependencies(&reg, &entry.name, &mut Vec::new())?;
        Ok(self.status_of(&entry))
    }

    /// Starts `name` after its dependencies; `chain` guards against cycles edited in by hand.
    fn start_with_dependencies(
        &self,
        reg: &Registry,
        name: &str,
        chain: &mut Vec<String>,
    ) -> GuestResult<()> {
        let entry = reg.service(name).ok_or_else(|| no_such_service(name))?;
        if self.is_active(&entry.name) {
            return Ok(());
        }
        if entry.delete_pending {
            return Err(GuestError::new(
                codes::ERROR_SERVICE_MARKED_FOR_DELETE,
                format!(
                    "start service {}: the service has been marked for deletion",
                    entry.name
                ),
            ));
        }
        if entry.start_type == StartType::Disabled {
            return Err(GuestError::new(
                codes::ERROR_SERVICE_DISABLED,
                format!("start service {}: the service is disabled", entry.name),
            ));
        }
        if chain.contains(&key(name)) {
            return Err(GuestError::new(
                codes::ERROR_CIRCULAR_DEPENDENCY,
                format!("start service {}: circular service dependency", entry.name),
            ));
        }
        chain.push(key(name));
        for dep in &entry.depends_on {
            match reg.service(dep) {
                None => {
                    return Err(GuestError::new(
                        codes::ERROR_SERVICE_DEPENDENCY_DELETED,
                        format!(
                            "start service {}: the dependency service {dep} does not exist",
                            entry.name
                        ),
                    ));
                }
                Some(d) if d.delete_pending => {
                    return Err(GuestError::new(
                        codes::ERROR_SERVICE_DEPENDENCY_DELETED,
                        format!(
                            "start service {}: the dependency service {dep} has been marked for deletion",
                            entry.name
                        ),
                    ));
                }
                Some(_) => {}
            }
            if let Err(e) = self.start_with_dependencies(reg, dep, chain) {
                return Err(GuestError::new(
                    codes::ERROR_SERVICE_DEPENDENCY_FAIL,
                    format!(
                        "start service {}: the dependency service {dep} failed to start: {}",
                        entry.name, e.message
                    ),
                ));
            }
        }
        chain.pop();
        let result = self.load(entry);
        let code = result.as_ref().err().map_or(0, |e| e.code);
        let mut scm = self.scm.lock();
        scm.last_error.insert(key(&entry.name), code);
        if result.is_ok() {
            scm.started.retain(|s| s != &entry.name);
            scm.started.push(entry.name.clone());
        }
        drop(scm);
        self.save_running_state();
        if let Err(e) = &result {
            let _ = self.events.append(NewEvent {
                event_id: 7000,
                provider: PROVIDER_SCM,
                level: LEVEL_ERROR,
                message: format!(
                    "The {} service failed to start due to the following error: {}",
                    entry.name, e.message
                ),
                data: BTreeMap::from([
                    ("param1".to_owned(), entry.name.clone()),
                    ("param2".to_owned(), format!("%%{}", e.code)),
                ]),
            });
        }
        result
    }

    /// Reads the driver file and loads it.
    fn load(&self, entry: &ServiceEntry) -> GuestResult<()> {
        let host = self.files.host_path(&entry.binary_path)?;
        let bytes = std::fs::read(&host).map_err(|e| {
            let mut err = GuestError::io(
                &format!("start service {}: read driver file", entry.name),
                &entry.binary_path,
                &host,
                &e,
            );
            // StartService reports a missing image as 2 whether or not its folder exists.
            if err.code == codes::ERROR_PATH_NOT_FOUND {
                err.code = codes::ERROR_FILE_NOT_FOUND;
            }
            err
        })?;
        let image = DriverImage::parse(&bytes).map_err(|e| {
            GuestError::new(
                codes::ERROR_BAD_EXE_FORMAT,
                format!(
                    "start service {}: {} is not a valid driver: {e}",
                    entry.name, entry.binary_path
                ),
            )
        })?;
        self.kernel
            .load_driver(&entry.name, &image)
            .map_err(|e| kernel_error(&e))
    }

    /// `ServiceStop`.
    pub(crate) fn service_stop(&self, name: &str) -> GuestResult<ServiceStatus> {
        let _scm_lock = self.scm_guard();
        let reg = self.registry.snapshot();
        let entry = reg
            .service(name)
            .ok_or_else(|| no_such_service(name))?
            .clone();
        match self.state_of(&entry.name) {
            // The kernel never reports StartPending: DriverEntry runs inside the load.
            ServiceState::Stopped | ServiceState::StartPending => {
                return Err(GuestError::new(
                    codes::ERROR_SERVICE_NOT_ACTIVE,
                    format!(
                        "stop service {}: the service has not been started",
                        entry.name
                    ),
                ));
            }
            ServiceState::StopPending => {
                return Err(GuestError::new(
                    codes::ERROR_SERVICE_CANNOT_ACCEPT_CTRL,
                    format!(
                        "stop service {}: a stop is already pending; the service cannot accept control messages",
                        entry.name
                    ),
                ));
            }
            ServiceState::Running => {}
        }
        let dependents: Vec<&str> = reg
            .services
            .values()
            .filter(|s| {
                s.depends_on
                    .iter()
                    .any(|d| d.eq_ignore_ascii_case(&entry.name))
            })
            .filter(|s| self.is_active(&s.name))
            .map(|s| s.name.as_str())
            .collect();
        if !dependents.is_empty() {
            return Err(GuestError::new(
                codes::ERROR_DEPENDENT_SERVICES_RUNNING,
                format!(
                    "stop service {}: dependent services are running ({})",
                    entry.name,
                    dependents.join(", ")
                ),
            ));
        }
        self.kernel
            .stop_driver(&entry.name)
            .map_err(|e| kernel_error(&e))?;
        self.scm.lock().started.retain(|s| s != &entry.name);
        self.save_running_state();
        self.finish_delete_if_stopped(&entry);
        Ok(self.status_of(&entry))
    }

    /// `ServiceQuery`.
    pub(crate) fn service_query(&self, name: &str) -> GuestResult<ServiceStatus> {
        let reg = self.registry.snapshot();
        let entry = reg
            .service(name)
            .ok_or_else(|| no_such_service(name))?
            .clone();
        let status = self.status_of(&entry);
        self.finish_delete_if_stopped(&entry);
        Ok(status)
    }

    /// `ServiceDelete`.
    pub(crate) fn service_delete(&self, name: &str) -> GuestResult<()> {
        let _scm_lock = self.scm_guard();
        let active = {
            let reg = self.registry.snapshot();
            let entry = reg.service(name).ok_or_else(|| no_such_service(name))?;
            if entry.delete_pending {
                return Err(GuestError::new(
                    codes::ERROR_SERVICE_MARKED_FOR_DELETE,
                    format!(
                        "delete service {}: it is already marked for deletion",
                        entry.name
                    ),
                ));
            }
            self.is_active(&entry.name)
        };
        self.registry
            .update(|reg| {
                if active {
                    if let Some(e) = reg.services.get_mut(&key(name)) {
                        e.delete_pending = true;
                    }
                } else {
                    reg.services.remove(&key(name));
                }
                Ok::<_, ()>(())
            })
            .map_err(|e| disk_error(&e))?
            .ok();
        Ok(())
    }

    /// Completes a pending delete once the service has stopped.
    fn finish_delete_if_stopped(&self, entry: &ServiceEntry) {
        if entry.delete_pending && !self.is_active(&entry.name) {
            let _ = self.registry.update(|reg| {
                reg.services.remove(&key(&entry.name));
                Ok::<_, ()>(())
            });
        }
    }

    /// Serialises service control; separate from `scm` (which status reads take briefly).
    fn scm_guard(&self) -> parking_lot::MutexGuard<'_, ()> {
        self.scm_control.lock()
    }
}

/// A dependency cycle through `start`, as service names, if there is one.
fn find_cycle(reg: &Registry, start: &str) -> Option<Vec<String>> {
    fn visit(reg: &Registry, name: &str, path: &mut Vec<String>, start: &str) -> bool {
        let Some(entry) = reg.service(name) else {
            return false;
        };
        for dep in &entry.depends_on {
            if dep.eq_ignore_ascii_case(start) {
                path.push(dep.clone());
                return true;
            }
            if path.iter().any(|p| p.eq_ignore_ascii_case(dep)) {
                continue;
            }
            path.push(dep.clone());
            if visit(reg, dep, path, start) {
                return true;
            }
            path.pop();
        }
        false
    }
    let mut path = vec![start.to_owned()];
    visit(reg, start, &mut path, start).then_some(path)
}

fn start_type_text(t: StartType) -> &'static str {
    match t {
        StartType::Boot => "boot start",
        StartType::System => "system start",
        StartType::Auto => "auto start",
        StartType::Demand => "demand start",
        StartType::Disabled => "disabled",
    }
}
