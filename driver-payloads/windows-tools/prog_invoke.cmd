@echo off
rem hvlab prog_invoke for Windows guests: runs hvlab_tools.ps1 (next to this file) with Windows
rem PowerShell 5.1; a program hvlab can start directly, exit code passed through.
powershell.exe -NoLogo -NoProfile -NonInteractive -ExecutionPolicy Bypass -File "%~dp0hvlab_tools.ps1" prog_invoke %*
exit /b %ERRORLEVEL%
