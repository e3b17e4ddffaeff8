//! Request dispatch: maps each agent [`Request`] onto the guest's operations.

use std::sync::atomic::Ordering;

use crate::error::{GuestError, GuestResult};
use crate::eventlog::SYSTEM_LOG;
use crate::guest::{GuestCore, PowerEvent};
use crate::protocol::{GuestConfig, PROTOCOL_VERSION, Request, Response, codes};
use crate::server::Handler;

/// Most event records in one `Events` reply; ask again from the last record id for more.
pub const MAX_EVENTS_PER_REPLY: usize = 1000;

impl Handler for GuestCore {
    fn handle(&self, req: Request) -> Response {
        if self.power.current().is_some() || self.power.halting.load(Ordering::SeqCst) {
            return Response::error(
                codes::ERROR_SHUTDOWN_IN_PROGRESS,
                "handle request: the guest is shutting down",
            );
        }
        match self.dispatch(req) {
            Ok(resp) => resp,
            Err(e) => e.to_response(),
        }
    }

    fn down(&self) -> bool {
        self.power.halting.load(Ordering::SeqCst) || self.kernel.bugcheck().is_some()
    }

    fn after_response(&self, req: &Request) {
        match req {
            Request::Reboot => self.power.request(PowerEvent::Reboot),
            Request::Shutdown => self.power.request(PowerEvent::Shutdown),
            _ => {}
        }
    }
}

impl GuestCore {
    fn dispatch(&self, req: Request) -> GuestResult<Response> {
        Ok(match req {
            Request::Ping => Response::Pong {
                boot_id: self.boot_id.clone(),
                uptime_ms: self.uptime_ms(),
                protocol: PROTOCOL_VERSION,
            },
            Request::Exec { argv, timeout_ms } => Response::Exec(self.exec(&argv, timeout_ms)?),
            Request::UploadBegin { path, size, sha256 } => {
                self.refuse_if_in_use(&path, "upload to")?;
                Response::UploadStarted {
                    id: self.files.begin_upload(&path, size, &sha256)?,
                }
            }
            Request::UploadChunk { id, offset, data } => Response::ChunkAccepted {
                id,
                received: self.files.upload_chunk(id, offset, &data)?,
            },
            Request::UploadEnd { id } => {
                let (path, size, sha256) = self.files.end_upload(id)?;
                Response::UploadDone { path, size, sha256 }
            }
            Request::Download {
                path,
                offset,
                max_len,
            } => {
                let (data, eof) = self.files.download(&path, offset, max_len)?;
                Response::Data { data, eof }
            }
            Request::Stat { path } => {
                let (size, sha256) = self.files.stat(&path)?;
                Response::FileStat { size, sha256 }
            }
            Request::List { dir } => Response::Listing {
                entries: self.files.list(&dir)?,
            },
            Request::Remove { path } => {
                self.refuse_if_in_use(&path, "remove")?;
                self.files.remove(&path)?;
                Response::Ok
            }
            Request::ServiceCreate {
                name,
                binary_path,
                start_type,
                depends_on,
            } => Response::Service(self.service_create(
                &name,
                &binary_path,
                start_type,
                &depends_on,
            )?),
            Request::ServiceStart { name } => Response::Service(self.service_start(&name)?),
            Request::ServiceStop { name } => Response::Service(self.service_stop(&name)?),
            Request::ServiceQuery { name } => Response::Service(self.service_query(&name)?),
            Request::ServiceDelete { name } => {
                self.service_delete(&name)?;
                Response::Ok
            }
            Request::SetTestSigning { on } => {
                self.set_registry(|r| r.boot.test_signing = on)?;
                Response::Ok
            }
            Request::SetCrashControl(cc) => {
                self.set_registry(|r| r.crash_control = cc)?;
                Response::Ok
            }
            Request::SetVerifier { drivers, flags } => {
                for d in &drivers {
                    if d.is_empty() || d.contains(['\\', '/']) {
                        return Err(GuestError::new(
                            codes::ERROR_INVALID_PARAMETER,
                            format!("set verifier: {d:?} is not a driver image name (like x.sys)"),
                        ));
                    }
                }
                self.set_registry(|r| {
                    r.verifier.drivers = drivers;
                    r.verifier.flags = flags;
                })?;
                Response::Ok
            }
            Request::GetConfig => {
                let reg = self.registry.snapshot();
                Response::Config(GuestConfig {
                    computer_name: self.vm.name.clone(),
                    boot_id: self.boot_id.clone(),
                    cpus: self.vm.cpus,
                    memory_mb: self.vm.memory_mb,
                    test_signing: self.test_signing,
                    test_signing_pending: reg.boot.test_signing,
                    crash_control: reg.crash_control,
                    verifier: self.verifier.clone(),
                    verifier_pending: reg.verifier,
                })
            }
            Request::Events { log, since_record } => {
                if !log.eq_ignore_ascii_case(SYSTEM_LOG) {
                    return Err(GuestError::new(
                        codes::ERROR_EVT_CHANNEL_NOT_FOUND,
                        format!("read event log {log:?}: the guest keeps only the System log"),
                    ));
                }
                let mut records = self.events.since(since_record).map_err(|e| {
                    GuestError::new(codes::ERROR_INTERNAL_ERROR, format!("read event log: {e}"))
                })?;
                records.truncate(MAX_EVENTS_PER_REPLY);
                Response::Events { records }
            }
            Request::Metric { name } => match self.kernel.metric(&name) {
                Some(v) => Response::Metric {
                    value: u64::try_from(v).unwrap_or(0),
                    name,
                },
                None => {
                    return Err(GuestError::new(
                        codes::ERROR_NOT_FOUND,
                        format!(
                            "read metric {name:?}: unknown (known: pool_bytes:<TAG>, \
                             pool_allocs:<TAG>, epoch_pending_bytes, epoch_current, epoch_released)"
                        ),
                    ));
                }
            },
            Request::Reboot | Request::Shutdown => Response::Ok,
        })
    }

    fn set_registry(&self, change: impl FnOnce(&mut crate::registry::Registry)) -> GuestResult<()> {
        self.registry
            .update(|r| {
                change(r);
                Ok::<_, ()>(())
            })
            .map_err(|e| {
                GuestError::new(
                    codes::ERROR_INTERNAL_ERROR,
                    format!("save the registry: {e}"),
                )
            })?
            .ok();
        Ok(())
    }

    /// A loaded driver's image cannot be replaced or deleted (error 32), as on Windows.
    fn refuse_if_in_use(&self, path: &str, what: &str) -> GuestResult<()> {
        let resolved = self.files.resolve(path)?;
        if let Some(service) = self.image_in_use(&resolved.host) {
            return Err(GuestError::new(
                codes::ERROR_SHARING_VIOLATION,
                format!(
                    "{what} {}: the file is in use (it is the image of running service {service})",
                    resolved.win
                ),
            ));
        }
        Ok(())
    }
}
