//! The script catalogue: every PowerShell script hvlab runs, as constructors from typed
//! inputs. Bodies are constants that only read `$P`; see [`super::script`] for rendering.

pub mod files;
pub mod guest;
pub mod host;

/// Finds `$P.Name` exactly (`Get-VM -Name` would treat `[`, `*` and `?` as wildcards).
macro_rules! find_vm {
    () => {
        "$vm = @(Get-VM | Where-Object { $_.Name -ceq $P.Name })\n\
         if ($vm.Count -eq 0) { throw [System.Management.Automation.ItemNotFoundException]::new(\"no virtual machine named '$($P.Name)' on this host\") }\n\
         $vm = $vm[0]\n"
    };
}
pub(crate) use find_vm;
