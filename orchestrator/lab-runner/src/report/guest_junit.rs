//! Guest JUnit files (a tool's own results, e.g. Catch2 `-r junit`) turned into testcases
//! of the unit's testsuite. A file that cannot be read or parsed becomes one failing
//! testcase naming the file and the reason: a broken tool report is a test result, not a
//! reason for the reporter to fail.

use std::fs;
use std::io::Read;
use std::path::Path;

use lab_config::{MESSAGE_MAX, cap_text};
use quick_junit::{
    DeserializeErrorKind, NonSuccessKind, Property, Report, TestCase, TestCaseStatus, XmlString,
};

use crate::bounds::OUTPUT_MAX;

/// Guest files larger than this are reported as failures instead of being parsed: a
/// runaway tool must not blow up the orchestrator's memory.
pub const MAX_GUEST_JUNIT_BYTES: u64 = 16 * 1024 * 1024;

/// Loads `rel` (relative to `results_dir`) and returns its testcases renamed
/// `<prefix>/<suite>/<case>` with `classname` set to ours; the guest's classname is kept
/// as a property.
pub fn load_cases(results_dir: &Path, rel: &Path, prefix: &str, classname: &str) -> Vec<TestCase> {
    let file_name = rel
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| rel.display().to_string());
    match read_capped(&results_dir.join(rel)).and_then(|xml| parse(&xml)) {
        Ok(report) => {
            let mut out = Vec::new();
            for suite in report.test_suites {
                for mut case in suite.test_cases {
                    case.name =
                        format!("{prefix}/{}/{}", suite.name.as_str(), case.name.as_str()).into();
                    if let Some(guest_class) = case.classname.take() {
                        case.add_property(Property::new("guest-classname", guest_class));
                    }
                    case.set_classname(classname);
                    case.add_property(Property::new("guest-junit", rel.display().to_string()));
                    cap_case(&mut case);
                    out.push(case);
                }
            }
            out
        }
        Err(e) => {
            let reason = lab_error::Chain(&e);
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
            status
                .set_message(format!(
                    "malformed guest junit file {}: {reason}",
                    rel.display()
                ))
                .set_type("guest-junit");
            let mut case = TestCase::new(format!("{prefix}/guest-junit/{file_name}"), status);
            case.set_classname(classname);
            case.add_property(Property::new("guest-junit", rel.display().to_string()));
            vec![case]
        }
    }
}

/// Caps a guest case's free text like the runner's own (output 64 KiB, messages 4 KiB):
/// one runaway case must not fill junit.xml.
fn cap_case(case: &mut TestCase) {
    fn cap(s: &mut Option<XmlString>, max: usize) {
        if let Some(x) = s
            && x.as_str().len() > max
        {
            *x = XmlString::new(cap_text(x.as_str(), max));
        }
    }
    cap(&mut case.system_out, OUTPUT_MAX);
    cap(&mut case.system_err, OUTPUT_MAX);
    match &mut case.status {
        TestCaseStatus::NonSuccess {
            message,
            description,
            ..
        }
        | TestCaseStatus::Skipped {
            message,
            description,
            ..
        } => {
            cap(message, MESSAGE_MAX);
            cap(description, MESSAGE_MAX);
        }
        TestCaseStatus::Success { .. } => {}
    }
}

/// Why a guest JUnit file became a failing testcase instead of testcases.
#[derive(Debug, thiserror::Error)]
enum Malformed {
    #[error("cannot open it")]
    Open(#[source] std::io::Error),
    #[error("cannot read it")]
    Read(#[source] std::io::Error),
    #[error("larger than {MAX_GUEST_JUNIT_BYTES} bytes")]
    TooLarge,
    #[error("not UTF-8")]
    NotUtf8(#[source] std::string::FromUtf8Error),
    #[error("the root element is not <testsuites> or <testsuite>")]
    Root,
    #[error("no XML element found")]
    NoElement,
    #[error(transparent)]
    Xml(#[from] quick_junit::DeserializeError),
}

fn read_capped(path: &Path) -> Result<String, Malformed> {
    let f = fs::File::open(path).map_err(Malformed::Open)?;
    let mut bytes = Vec::new();
    f.take(MAX_GUEST_JUNIT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(Malformed::Read)?;
    if bytes.len() as u64 > MAX_GUEST_JUNIT_BYTES {
        return Err(Malformed::TooLarge);
    }
    String::from_utf8(bytes).map_err(Malformed::NotUtf8)
}

/// Parses a JUnit document. Accepts what tools write besides quick-junit's own shape: a
/// bare `<testsuite>` root (wrapped), and timestamps without a zone (gtest; dropped).
fn parse(xml: &str) -> Result<Report, Malformed> {
    let owned;
    let xml = match root_element(xml) {
        Some(r) if is_tag(r, "testsuites") => xml,
        Some(r) if is_tag(r, "testsuite") => {
            owned = format!("<testsuites>{r}</testsuites>");
            &owned
        }
        Some(_) => return Err(Malformed::Root),
        None => return Err(Malformed::NoElement),
    };
    match Report::deserialize_from_str(xml) {
        Err(e) if matches!(e.kind(), DeserializeErrorKind::ParseTimestampError(_)) => {
            Ok(Report::deserialize_from_str(&strip_attr(xml, "timestamp"))?)
        }
        r => Ok(r?),
    }
}

/// The document from its root element on (after the declaration, comments, doctype).
fn root_element(mut xml: &str) -> Option<&str> {
    loop {
        xml = xml.trim_start_matches(['\u{feff}', ' ', '\t', '\r', '\n']);
        let skip_to = |end: &str| xml.find(end).map(|i| i + end.len());
        let rest = if xml.starts_with("<?") {
            skip_to("?>")?
        } else if xml.starts_with("<!--") {
            skip_to("-->")?
        } else if xml.starts_with("<!") {
            skip_to(">")?
        } else if xml.starts_with('<') {
            return Some(xml);
        } else {
            return None;
        };
        xml = &xml[rest..];
    }
}

fn is_tag(s: &str, name: &str) -> bool {
    s.strip_prefix('<')
        .and_then(|s| s.strip_prefix(name))
        .and_then(|s| s.chars().next())
        .is_some_and(|c| c.is_whitespace() || c == '>' || c == '/')
}

/// Removes every ` name="..."` attribute (values never contain `"` in XML).
fn strip_attr(xml: &str, name: &str) -> String {
    let needle = format!(" {name}=\"");
    let mut out = String::with_capacity(xml.len());
    let mut rest = xml;
    while let Some(i) = rest.find(&needle) {
        out.push_str(&rest[..i]);
        let after = &rest[i + needle.len()..];
        rest = match after.find('"') {
            Some(j) => &after[j + 1..],
            None => "",
        };
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const CATCH2: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites>
  <testsuite name="map_tests.exe" errors="0" failures="1" tests="2" hostname="tbd" time="0.010" timestamp="2025-01-01T00:00:00Z">
    <properties><property name="random-seed" value="42"/></properties>
    <testcase classname="map_tests.exe.global" name="lookup after insert" time="0.001" status="run"/>
    <testcase classname="map_tests.exe.global" name="delete while iterating" time="0.002" status="run">
      <failure message="REQUIRE( n == 3 )" type="REQUIRE">at map_test.cpp:42</failure>
    </testcase>
  </testsuite>
</testsuites>
"#;

    fn write(dir: &Path, name: &str, body: &str) -> std::path::PathBuf {
        fs::write(dir.join(name), body).unwrap();
        name.into()
    }

    #[test]
    fn catch2_cases_are_renamed_and_keep_their_status() {
        let d = tempfile::tempdir().unwrap();
        let rel = write(d.path(), "g.xml", CATCH2);
        let cases = load_cases(d.path(), &rel, "iter-1", "s@t");
        assert_eq!(cases.len(), 2);
        assert_eq!(
            cases[0].name.as_str(),
            "iter-1/map_tests.exe/lookup after insert"
        );
        assert_eq!(cases[0].classname.as_ref().unwrap().as_str(), "s@t");
        assert!(matches!(cases[0].status, TestCaseStatus::Success { .. }));
        assert!(matches!(
            &cases[1].status,
            TestCaseStatus::NonSuccess { message: Some(m), .. } if m.as_str() == "REQUIRE( n == 3 )"
        ));
    }

    #[test]
    fn a_bare_testsuite_root_and_zoneless_timestamps_are_accepted() {
        let d = tempfile::tempdir().unwrap();
        let body = r#"<?xml version="1.0"?><!-- gtest -->
<testsuite name="all" tests="1" timestamp="2025-01-01T00:00:00.123"><testcase name="a"/></testsuite>"#;
        let rel = write(d.path(), "g.xml", body);
        let cases = load_cases(d.path(), &rel, "iter-2", "s@t");
        assert_eq!(cases.len(), 1, "{cases:?}");
        assert_eq!(cases[0].name.as_str(), "iter-2/all/a");
    }

    #[test]
    fn malformed_missing_and_foreign_files_become_one_failure_each() {
        let d = tempfile::tempdir().unwrap();
        let cases = [
            (
                write(d.path(), "trunc.xml", &CATCH2[..200]),
                "malformed guest junit file trunc.xml",
            ),
            (
                write(d.path(), "text.xml", "all good!"),
                "no XML element found",
            ),
            (
                write(d.path(), "html.xml", "<html></html>"),
                "not <testsuites> or <testsuite>",
            ),
            ("absent.xml".into(), "cannot open it"),
        ];
        for (rel, want) in cases {
            let got = load_cases(d.path(), &rel, "iter-1", "s@t");
            assert_eq!(got.len(), 1);
            let name = rel.display().to_string();
            assert_eq!(got[0].name.as_str(), format!("iter-1/guest-junit/{name}"));
            match &got[0].status {
                TestCaseStatus::NonSuccess {
                    message: Some(m), ..
                } => {
                    assert!(m.as_str().contains(want), "{m:?} lacks {want:?}");
                    assert!(m.as_str().contains(&name), "{m:?}");
                }
                s => panic!("{s:?}"),
            }
        }
    }

    #[test]
    fn a_runaway_guest_case_is_capped_with_a_note() {
        let d = tempfile::tempdir().unwrap();
        let big = "x".repeat(1024 * 1024);
        let body = format!(
            r#"<testsuites><testsuite name="s"><testcase name="a"><failure message="{big}">{big}</failure><system-out>{big}</system-out><system-err>{big}</system-err></testcase></testsuite></testsuites>"#
        );
        fs::write(d.path().join("g.xml"), body).unwrap();
        let cases = load_cases(d.path(), Path::new("g.xml"), "iter-1", "s@t");
        assert_eq!(cases.len(), 1);
        let c = &cases[0];
        for s in [&c.system_out, &c.system_err] {
            let s = s.as_ref().unwrap().as_str();
            assert!(
                s.len() <= OUTPUT_MAX && s.ends_with("KiB cut]"),
                "{}",
                s.len()
            );
        }
        let TestCaseStatus::NonSuccess {
            message: Some(m),
            description: Some(d),
            ..
        } = &c.status
        else {
            panic!("{:?}", c.status)
        };
        for s in [m.as_str(), d.as_str()] {
            assert!(
                s.len() <= MESSAGE_MAX && s.ends_with("KiB cut]"),
                "{}",
                s.len()
            );
        }
    }
}
