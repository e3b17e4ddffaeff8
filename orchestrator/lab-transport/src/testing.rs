//! Test support (feature `test-support`): a throwaway OpenSSH server on a loopback port
//! with its own host key, config, authorized key and known_hosts, run as the current user
//! and killed on drop. Used by this crate's tests and benchmark, and available to other
//! crates' tests that need a real SSH peer.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::ssh::{HostKeyPolicy, SshAuth, SshConfig};

/// Set (by `.ci/run`) when SSH tests must fail rather than skip if no sshd can be started.
pub const REQUIRE_ENV: &str = "HVLAB_REQUIRE_SSHD";

/// A running sshd. Dropping it kills the server and every session process it started.
#[derive(Debug)]
pub struct Sshd {
    dir: tempfile::TempDir,
    sshd: PathBuf,
    port: u16,
    child: Option<Child>,
    user: String,
}

fn find_sshd() -> Option<PathBuf> {
    let candidates = ["/usr/sbin/sshd", "/usr/local/sbin/sshd", "/sbin/sshd"];
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .or_else(|| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join("sshd"))
                    .find(|p| p.is_file())
            })
        })
}

fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn keygen(path: &Path) -> Result<(), String> {
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "hvlab-test", "-f"])
        .arg(path))
    .map(|_| ())
}

fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("cannot bind loopback: {e}"))?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

impl Sshd {
    /// Starts a server, or says why it cannot.
    pub fn start() -> Result<Sshd, String> {
        let sshd = find_sshd().ok_or("no sshd binary (install openssh-server)")?;
        let dir = tempfile::Builder::new()
            .prefix("hvlab-sshd-")
            .tempdir()
            .map_err(|e| format!("cannot create a temp dir: {e}"))?;
        let d = dir.path();
        keygen(&d.join("host_ed25519"))?;
        keygen(&d.join("client_ed25519"))?;
        keygen(&d.join("stranger_ed25519"))?;
        let client_pub =
            std::fs::read_to_string(d.join("client_ed25519.pub")).map_err(|e| e.to_string())?;
        std::fs::write(d.join("authorized_keys"), client_pub).map_err(|e| e.to_string())?;
        let user = run(Command::new("id").arg("-un"))?.trim().to_owned();
        let port = free_port()?;
        let host_pub =
            std::fs::read_to_string(d.join("host_ed25519.pub")).map_err(|e| e.to_string())?;
        let mut fields = host_pub.split_whitespace();
        let (kind, key) = (fields.next().unwrap_or(""), fields.next().unwrap_or(""));
        std::fs::write(
            d.join("known_hosts"),
            format!("[127.0.0.1]:{port} {kind} {key}\n"),
        )
        .map_err(|e| e.to_string())?;
        std::fs::write(
            d.join("sshd_config"),
            format!(
                "Port {port}\n\
                 ListenAddress 127.0.0.1\n\
                 HostKey {host}\n\
                 PidFile none\n\
                 AuthorizedKeysFile {auth}\n\
                 StrictModes no\n\
                 PermitRootLogin yes\n\
                 PubkeyAuthentication yes\n\
                 PasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\n\
                 UsePAM no\n\
                 MaxSessions 64\n\
                 MaxStartups 64:30:128\n\
                 LogLevel ERROR\n\
                 Subsystem sftp internal-sftp\n\
                 SetEnv HOME={home}\n",
                home = d.join("home").display(),
                host = d.join("host_ed25519").display(),
                auth = d.join("authorized_keys").display(),
            ),
        )
        .map_err(|e| e.to_string())?;
        // Sessions get an empty HOME: the machine's own dotfiles (a ~/.bashrc that runs
        // `pyenv init` costs 200 ms per command here) must not decide test timings.
        std::fs::create_dir_all(d.join("home")).map_err(|e| e.to_string())?;
        // sshd refuses to start as root without its privilege separation directory.
        if !Path::new("/run/sshd").exists() {
            let _ = std::fs::create_dir_all("/run/sshd");
        }
        let mut me = Sshd {
            dir,
            sshd,
            port,
            child: None,
            user,
        };
        me.spawn()?;
        Ok(me)
    }

    /// Starts a server; without one, panics if [`REQUIRE_ENV`] is set, else prints why the
    /// calling test is skipped and returns None.
    pub fn start_or_skip(test: &str) -> Option<Sshd> {
        match Sshd::start() {
            Ok(s) => Some(s),
            Err(why) if std::env::var_os(REQUIRE_ENV).is_some() => {
                panic!("{test}: sshd is required ({REQUIRE_ENV} is set) but cannot start: {why}")
            }
            Err(why) => {
                eprintln!("SKIPPED {test}: cannot start a test sshd: {why}");
                None
            }
        }
    }

    fn spawn(&mut self) -> Result<(), String> {
        let log =
            std::fs::File::create(self.dir.path().join("sshd.log")).map_err(|e| e.to_string())?;
        let child = Command::new(&self.sshd)
            .args(["-D", "-e", "-f"])
            .arg(self.dir.path().join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.sshd.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                let log =
                    std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default();
                return Err(format!("sshd exited ({status}): {}", log.trim()));
            }
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let mut banner = [0u8; 7];
                if s.read_exact(&mut banner).is_ok() && &banner == b"SSH-2.0" {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err("sshd did not answer within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server and all its session processes, as a host reboot would.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id();
            for p in descendants(pid) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(p as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// [`Sshd::stop`], then the same server again on the same port with the same keys.
    pub fn restart(&mut self) -> Result<(), String> {
        self.stop();
        self.spawn()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    /// The temp directory (keys, config, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The authorized client key.
    pub fn client_key(&self) -> PathBuf {
        self.dir.path().join("client_ed25519")
    }

    /// A valid key that is not authorized.
    pub fn stranger_key(&self) -> PathBuf {
        self.dir.path().join("stranger_ed25519")
    }

    pub fn known_hosts(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }

    /// A client configuration: key auth, host key checked against the known_hosts file.
    pub fn config(&self) -> SshConfig {
        SshConfig::new(
            "127.0.0.1",
            self.user.clone(),
            SshAuth::KeyFile {
                path: self.client_key(),
                passphrase: None,
            },
            HostKeyPolicy::KnownHosts(self.known_hosts()),
        )
        .port(self.port)
    }

    /// Arguments for the OpenSSH `ssh`/`scp` clients to reach this server the same way.
    pub fn cli_args(&self) -> Vec<String> {
        vec![
            "-i".into(),
            self.client_key().display().to_string(),
            "-o".into(),
            format!("UserKnownHostsFile={}", self.known_hosts().display()),
            "-o".into(),
            "StrictHostKeyChecking=yes".into(),
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            "LogLevel=ERROR".into(),
        ]
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// All processes below `root` in the process tree (Linux /proc).
fn descendants(root: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
                continue;
            };
            // The command name may contain spaces; fields after the last ')' are fixed.
            let Some(after) = stat.rsplit_once(')').map(|(_, a)| a) else {
                continue;
            };
            if let Some(ppid) = after
                .split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u32>().ok())
            {
                parent_of.push((pid, ppid));
            }
        }
    }
    let mut found = Vec::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for &(child, parent) in &parent_of {
            if parent == p && !found.contains(&child) {
                found.push(child);
                frontier.push(child);
            }
        }
    }
    found
}

/// Pids of processes whose command line contains `needle` (to check that a killed remote
/// command is really gone; the test sshd is local).
pub fn processes_matching(needle: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    let me = std::process::id();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if pid == me {
                continue;
            }
            if let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) {
                let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
                if text.contains(needle) {
                    pids.push(pid);
                }
            }
        }
    }
    pids
}
