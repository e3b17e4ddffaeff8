# hvlab's guest tools on real Windows: `hvlab_tools.ps1 <map_stress|map_tool|ebpf_stats|prog_invoke> [args]`.
# Runs under Windows PowerShell 5.1 (powershell.exe), which every supported Windows Server has:
# the C# next to this script is compiled in memory with Add-Type (C# 5) and calls
# EbpfApi.dll by P/Invoke, so nothing has to be built for the guest beforehand.
# The tool's exit code and output are passed through unchanged (one JSON line on stdout for
# map_stress; see docs/extension-authors.md). Callers must be elevated, as for EbpfApi.
$ErrorActionPreference = 'Stop'
$tool = if ($args.Count -gt 0) { [string]$args[0] } else { '' }
$rest = [string[]]@()
if ($args.Count -gt 1) { $rest = [string[]]($args[1..($args.Count - 1)]) }
try {
  if (-not ('Hvlab.Cli' -as [type])) {
    $sources = @('HvlabEbpf.cs', 'MapStress.cs', 'MapTool.cs', 'ProgInvoke.cs') | ForEach-Object { Join-Path $PSScriptRoot $_ }
    Add-Type -Path $sources -Language CSharp
  }
} catch {
  [Console]::Error.WriteLine("hvlab tools: failed to compile the C# tools next to $($MyInvocation.MyCommand.Path): $($_.Exception.Message)")
  exit 3
}
exit ([Hvlab.Cli]::Run($tool, $rest))
