//! Remote transports to hosts and guests: SSH (ssh2) and WinRM (winrm-rs).
