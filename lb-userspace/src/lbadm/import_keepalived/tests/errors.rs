//! Input that cannot be converted at all: each error names the file and, where there is
//! one, the line.

use super::*;

fn error_of(path: &Path) -> ImportError {
    match import(path, &ImportOptions::default()) {
        Ok(import) => panic!("expected an error, got:\n{}", import.yaml),
        Err(error) => error,
    }
}

#[test]
fn a_missing_file_is_named() {
    let scratch = Scratch::new();
    let path = scratch.dir.join("keepalived.conf");
    let error = error_of(&path);
    assert!(matches!(error, ImportError::Read { .. }), "{error:?}");
    assert!(
        error
            .to_string()
            .starts_with(&format!("{}: cannot read: ", path.display())),
        "{error}"
    );
}

#[test]
fn an_include_loop_names_the_include_that_closes_it() {
    let scratch = Scratch::new();
    let top = scratch.write(
        "keepalived.conf",
        "global_defs {\n}\ninclude conf.d/*.conf\n",
    );
    scratch.write("conf.d/a.conf", "# a\ninclude b.inc\n");
    let b = scratch.write("conf.d/b.inc", "\n\ninclude ../keepalived.conf\n");
    let error = error_of(&top);
    assert_eq!(
        error.to_string(),
        format!(
            "{}:3: include loop: {} is already being read (it includes itself)",
            b.display(),
            scratch.dir.join("conf.d/../keepalived.conf").display()
        )
    );
}

#[test]
fn an_included_directory_is_skipped_and_listed() {
    let scratch = Scratch::new();
    let top = scratch.write("keepalived.conf", "include conf.d\ninclude conf.d/*\n");
    scratch.write("conf.d/sub/x.conf", "");
    let converted = convert_file(&top, &on_eth0());
    assert_eq!(lines(&converted), [(1, "include"), (2, "include")]);
}

#[test]
fn an_interface_lbd_cannot_attach_to_is_refused() {
    let options = ImportOptions {
        interfaces: vec!["eth0".into(), "eth0:1".into()],
    };
    let error = import(&fixture::fixture_path(), &options).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("interface \"eth0:1\": not a Linux interface name"),
        "{error}"
    );
}
