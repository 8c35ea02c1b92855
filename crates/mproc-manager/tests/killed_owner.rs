//! An owner killed with SIGKILL: its manager server dies with it, and
//! nothing is left in the temporary directory.

mod common;

use std::time::Duration;

use common::{wait_gone, watchdog};
use mproc_manager::Manager;
use mproc_testkit::{TempDir, descendants, reexec};

const ROLE: &str = "MPROC_MANAGER_TEST_ROLE";

/// The owner's role (this test binary run again).
#[test]
#[ignore = "a role played in a child process"]
fn child() {
    if std::env::var(ROLE).is_err() {
        return;
    }
    let m = Manager::start().unwrap();
    let d = m.dict::<u32, u32>().unwrap();
    d.insert(&1, &2).unwrap();
    assert_eq!(d.get(&1).unwrap(), Some(2));
    println!("SERVER {}", m.pid().unwrap().as_raw());
    std::thread::sleep(Duration::from_secs(120));
}

#[test]
fn a_killed_owner_leaves_no_server_and_no_socket() {
    watchdog(300, || {
        // The owners' temporary directory (where sockets used to go) is ours.
        let tmp = TempDir::new();
        for _ in 0..20 {
            let mut kid = reexec(
                "child",
                &[(ROLE, "1".as_ref()), ("TMPDIR", tmp.path().as_os_str())],
            );
            let server: i32 = kid.line("SERVER ").parse().unwrap();
            let family = descendants(kid.pid());
            assert!(family.contains(&server), "{server} not in {family:?}");
            kid.sigkill();
            for p in family {
                assert!(wait_gone(p, 10), "process {p} outlived its killed owner");
            }
        }
        assert_eq!(tmp.entries(), Vec::<String>::new());
    });
}
