//! Atomic writes: content, overwrite, and clean failures naming the path.

use std::path::Path;

use histoscreen_edge::fsutil::write_atomic;

fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect()
}

#[test]
fn writes_and_overwrites_without_temp_files() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("report.csv");
    write_atomic(&p, b"first").unwrap();
    write_atomic(&p, b"second").unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), b"second");
    assert!(leftovers(dir.path()).is_empty());
}

#[test]
fn missing_directory_errors_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("no-such-dir/report.csv");
    let err = write_atomic(&p, b"x").unwrap_err().to_string();
    assert_eq!(
        err,
        format!("cannot write {}: no such file or directory", p.display())
    );
}

#[test]
fn parent_that_is_a_file_errors_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    let p = file.join("report.csv");
    let err = write_atomic(&p, b"x").unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("cannot write {}:", p.display())),
        "{err}"
    );
    assert!(leftovers(dir.path()).is_empty());
}

#[test]
fn read_only_directory_errors_and_leaves_no_temp_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let ro = dir.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    let p = ro.join("card.json");
    // root ignores directory permissions, so the unwritable case is a directory
    // on a read-only filesystem there: /proc accepts no new files for anyone.
    // SAFETY: geteuid has no preconditions.
    let target = if unsafe { libc::geteuid() } == 0 {
        Path::new("/proc/histoscreen-edge-test.json").to_path_buf()
    } else {
        p.clone()
    };
    let err = write_atomic(&target, b"{}").unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("cannot write {}:", target.display())),
        "{err}"
    );
    assert!(!target.exists());
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(leftovers(&ro).is_empty());
}
