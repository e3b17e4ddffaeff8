//! Integration tests of lab-transport: SSH against a real OpenSSH server started per test,
//! WinRM against a local responder serving recorded WS-Management exchanges, and secret
//! redaction across everything a run writes.

mod causes;
mod redaction;
mod ssh;
mod ssh_files;
mod support;
mod winrm;
mod winrm_mock;
