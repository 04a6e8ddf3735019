//! Start-up settings of a real `kmsd` that must fail at once with a message naming the value.

use kms_tests::{Daemon, Options, data_dir};

#[test]
fn missing_database_folder_names_the_path() {
    let dir = data_dir();
    let database = dir.path().join("no-such-folder").join("kms.db");
    let options = Options {
        args: vec!["--database-path".into(), database.display().to_string()],
        ..Options::default()
    };

    let exited = Daemon::start_expecting_exit(dir.path(), &options);

    assert_eq!(exited.code, Some(1), "{}", exited.stderr);
    assert!(
        exited.stderr.contains(&format!(
            "the folder {} of the database",
            dir.path().join("no-such-folder").display()
        )),
        "{}",
        exited.stderr
    );
    assert!(!database.exists());
}

#[test]
fn second_daemon_on_data_dir_rejected() {
    let dir = data_dir();
    let first = Daemon::start(dir.path());

    let exited = Daemon::start_expecting_exit(dir.path(), &Options::default());

    assert_eq!(exited.code, Some(1), "{}", exited.stderr);
    assert!(
        exited.stderr.contains("is in use by another kmsd"),
        "{}",
        exited.stderr
    );
    assert!(first.stop(), "the first daemon did not stop cleanly");
}
