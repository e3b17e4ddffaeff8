//! Hyper-V backend tests without Hyper-V: generated scripts (snapshots), quoting against an
//! oracle, recorded outputs, flows against a scripted host; and the opt-in real-host suite.

mod dry_run;
mod flows;
mod hosts;
mod injection;
mod ps_cmdlets;
mod ps_parse;
mod ps_syntax;
mod real_host;
mod recorded;
mod scripts;
mod secure_boot;
mod support;
