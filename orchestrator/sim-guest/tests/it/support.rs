//! Test support: a disk with sim drivers and tools, an in-process guest, a sync agent client.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use sim_guest::disk::{Disk, VmConfig};
use sim_guest::protocol::*;
use sim_guest::{BootOptions, RunningGuest};

pub const EBPFCORE: &str = r"C:\Windows\System32\drivers\ebpfcore.sys";
pub const SAMPLE: &str = r"C:\Windows\System32\drivers\sample_ebpf_ext.sys";
pub const MAP_TOOL: &str = r"C:\ebpf\map_tool.exe";
pub const MAP_STRESS: &str = r"C:\ebpf\map_stress.exe";
pub const EBPF_STATS: &str = r"C:\ebpf\ebpf_stats.exe";

pub fn driver_manifest(image: &str, signature: &str, faults: &[&str]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "format": "hvlab-sim-driver/1",
        "image": image,
        "signature": signature,
        "faults": faults,
    }))
    .unwrap()
}

pub fn tool_file(tool: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"format": "hvlab-sim-tool/1", "tool": tool})).unwrap()
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// A disk directory in a temp dir, with the sim drivers and tools placed on it.
pub struct TestDisk {
    _dir: tempfile::TempDir,
    pub disk: Disk,
}

impl TestDisk {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let disk = Disk::create(
            dir.path().join("disk"),
            &VmConfig {
                name: "SIMVM1".into(),
                cpus: 2,
                memory_mb: 256,
                boot_delay_ms: 0,
                resume: false,
                tags: Default::default(),
            },
        )
        .unwrap();
        let t = TestDisk { _dir: dir, disk };
        t.put(EBPFCORE, &driver_manifest("ebpfcore", "test", &[]));
        t.put(SAMPLE, &driver_manifest("sample_ext", "test", &[]));
        for tool in ["map_tool", "map_stress", "ebpf_stats"] {
            t.put(&format!(r"C:\ebpf\{tool}.exe"), &tool_file(tool));
        }
        t
    }

    pub fn root(&self) -> &Path {
        self.disk.root()
    }

    /// Host path of a Windows path on this disk.
    pub fn host(&self, win: &str) -> PathBuf {
        sim_guest::winpath::WinPath::parse(win)
            .unwrap()
            .to_host(self.root())
    }

    pub fn put(&self, win: &str, data: &[u8]) {
        let p = self.host(win);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }

    pub fn boot(&self) -> RunningGuest {
        RunningGuest::boot(
            self.root(),
            &BootOptions {
                skip_boot_delay: true,
            },
        )
        .unwrap()
    }
}

/// A blocking agent client on one connection.
pub struct Client {
    pub stream: TcpStream,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        Client { stream }
    }

    pub fn call(&mut self, req: &Request) -> Response {
        self.try_call(req).unwrap()
    }

    /// The reply, or how reading it failed (a crashed guest closes without one).
    pub fn try_call(&mut self, req: &Request) -> Result<Response, String> {
        write_request(&mut self.stream, req).map_err(|e| format!("{e:?}"))?;
        read_response(&mut self.stream).map_err(|e| format!("{e:?}"))
    }

    /// Expects a success and returns it.
    pub fn ok(&mut self, req: &Request) -> Response {
        let resp = self.call(req);
        assert!(
            !matches!(resp, Response::Error { .. }),
            "{req:?} failed: {resp:?}"
        );
        resp
    }

    /// Expects an error and returns its code and message.
    pub fn err(&mut self, req: &Request) -> (u32, String) {
        match self.call(req) {
            Response::Error { code, message } => (code, message),
            other => panic!("{req:?} should fail, got {other:?}"),
        }
    }

    pub fn exec(&mut self, argv: &[&str], timeout_ms: u64) -> ExecOutput {
        match self.ok(&Request::Exec {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            timeout_ms,
        }) {
            Response::Exec(out) => out,
            other => panic!("exec: {other:?}"),
        }
    }

    pub fn service(&mut self, req: &Request) -> ServiceStatus {
        match self.ok(req) {
            Response::Service(s) => s,
            other => panic!("{req:?}: {other:?}"),
        }
    }

    pub fn create_service(&mut self, name: &str, binary: &str, start: StartType, deps: &[&str]) {
        self.service(&Request::ServiceCreate {
            name: name.into(),
            binary_path: binary.into(),
            start_type: start,
            depends_on: deps.iter().map(|s| s.to_string()).collect(),
        });
    }

    pub fn events(&mut self, since: u64) -> Vec<EventRecord> {
        match self.ok(&Request::Events {
            log: "System".into(),
            since_record: since,
        }) {
            Response::Events { records } => records,
            other => panic!("events: {other:?}"),
        }
    }

    pub fn boot_id(&mut self) -> String {
        match self.ok(&Request::Ping) {
            Response::Pong { boot_id, .. } => boot_id,
            other => panic!("ping: {other:?}"),
        }
    }
}

/// Polls `f` until it is true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    f()
}

/// Installs and starts a production-signed ebpfcore (no test signing needed): enough for
/// tools on hash maps.
pub fn start_core(disk: &TestDisk, c: &mut Client) {
    disk.put(
        r"C:\drivers\core.sys",
        &driver_manifest("ebpfcore", "production", &[]),
    );
    c.create_service("ebpfcore", r"C:\drivers\core.sys", StartType::Demand, &[]);
    c.service(&Request::ServiceStart {
        name: "ebpfcore".into(),
    });
}
