use super::*;

fn rec(kind: u8, name: &str) -> Vec<u8> {
    let mut r = vec![kind];
    r.extend_from_slice(name.as_bytes());
    r
}

#[test]
fn registrations_are_counted_per_name() {
    let mut names = Vec::new();
    apply(&mut names, &rec(REGISTER, "a"));
    apply(&mut names, &rec(REGISTER, "b"));
    apply(&mut names, &rec(REGISTER, "a"));
    apply(&mut names, &rec(UNREGISTER, "a"));
    apply(&mut names, &rec(UNREGISTER, "nobody"));
    names.sort();
    assert_eq!(names, ["/a", "/b"]);
    apply(&mut names, &rec(UNREGISTER, "a"));
    apply(&mut names, &rec(UNREGISTER, "a"));
    assert_eq!(names, ["/b"]);
}

#[test]
fn malformed_records_are_ignored() {
    let mut names = Vec::new();
    let long = "x".repeat(251);
    for bad in [
        vec![],
        vec![REGISTER],
        rec(REGISTER, "a/b"),
        rec(REGISTER, ".."),
        rec(REGISTER, &long),
        vec![REGISTER, 0xff, 0xfe],
        rec(b'?', "a"),
    ] {
        apply(&mut names, &bad);
    }
    assert!(names.is_empty(), "{names:?}");
    assert_eq!(record(REGISTER, &long), None);
    assert_eq!(record(REGISTER, "ok"), Some(rec(REGISTER, "ok")));
}

#[test]
fn a_tracker_holds_at_most_max_names() {
    let mut names = Vec::new();
    for i in 0..MAX_NAMES + 10 {
        apply(&mut names, &rec(REGISTER, &format!("n{i}")));
    }
    assert_eq!(names.len(), MAX_NAMES);
}

#[test]
fn a_stray_variable_names_no_tracker_socket() {
    // A descriptor that is not a SOCK_SEQPACKET socket never makes a tracker.
    let file = std::fs::File::open("/dev/null").unwrap();
    assert!(!sys::is_seqpacket(file.as_raw_fd()));
    assert_eq!(sys::socket_inode(file.as_raw_fd()), None);
    let (a, b) = sys::socketpair_with(libc::SOCK_SEQPACKET, false).unwrap();
    assert!(sys::is_seqpacket(a.as_raw_fd()));
    let (ia, ib) = (
        sys::socket_inode(a.as_raw_fd()),
        sys::socket_inode(b.as_raw_fd()),
    );
    assert!(ia.is_some() && ib.is_some() && ia != ib);
}
