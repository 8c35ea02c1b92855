use super::*;
use crate::handle::{from_bytes_with_fds, to_bytes_with_fds};

/// Unlinks a name on drop, so a failing test leaves nothing in /dev/shm.
struct Cleanup(String);
impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = crate::unlink_named(&self.0);
    }
}

#[test]
fn generated_names_have_python_form() {
    let shm = SharedMemory::create(1).unwrap();
    let name = shm.name();
    assert_eq!(name.len(), 12, "{name}");
    assert!(name.starts_with("psm_"));
    assert!(
        name[4..]
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    assert_eq!(shm.size(), 1);
    assert!(shm.unlinks_on_drop());
}

#[test]
fn open_read_write_and_creator_unlinks() {
    let shm = SharedMemory::create(4096).unwrap();
    let name = shm.name().to_owned();
    shm.write(4090, b"python").unwrap();
    assert!(shm.write(4091, b"python").is_err());
    let peer = SharedMemory::open(&format!("/{name}")).unwrap();
    assert_eq!(peer.size(), 4096);
    assert!(!peer.unlinks_on_drop());
    let mut b = [0u8; 6];
    peer.read(4090, &mut b).unwrap();
    assert_eq!(&b, b"python");
    assert_eq!(peer.to_vec().len(), 4096);
    peer.close();
    assert!(SharedMemory::open(&name).is_ok());
    shm.close();
    assert!(matches!(
        SharedMemory::open(&name),
        Err(SegmentError::NotFound(_))
    ));
}

#[test]
fn persist_keeps_the_name_and_unlink_twice_is_not_found() {
    let mut shm = SharedMemory::create(64).unwrap();
    let name = shm.name().to_owned();
    let _cleanup = Cleanup(name.clone());
    shm.persist();
    drop(shm);
    let mut again = SharedMemory::open(&name).unwrap();
    again.unlink().unwrap();
    assert!(matches!(again.unlink(), Err(SegmentError::NotFound(_))));
    assert!(matches!(
        SharedMemory::open(&name),
        Err(SegmentError::NotFound(_))
    ));
}

#[test]
fn argument_errors() {
    assert!(matches!(
        SharedMemory::create(0),
        Err(SegmentError::ZeroSize)
    ));
    assert!(matches!(
        SharedMemory::open("psm_nonexistent_x"),
        Err(SegmentError::NotFound(_))
    ));
    let name = format!("mproc_t_shm_{}", crate::segment::random_hex(8));
    let a = SharedMemory::create_named(&format!("/{name}"), 10).unwrap();
    assert_eq!(a.name(), name);
    assert!(matches!(
        SharedMemory::create_named(&name, 10),
        Err(SegmentError::AlreadyExists(_))
    ));
    assert!(matches!(
        SharedMemory::create_named("a/b", 10),
        Err(SegmentError::InvalidName(_))
    ));
}

#[test]
fn travels_as_a_handle_even_after_unlink() {
    let mut shm = SharedMemory::create(16).unwrap();
    shm.write(0, b"abc").unwrap();
    let (bytes, fds) = to_bytes_with_fds(&shm).unwrap();
    shm.unlink().unwrap();
    let got: SharedMemory = from_bytes_with_fds(&bytes, fds).unwrap();
    assert_eq!(got.name(), shm.name());
    assert_eq!(&got.to_vec()[..3], b"abc");
    assert!(!got.unlinks_on_drop());
    // An anonymous segment is not a SharedMemory.
    let anon = Segment::anonymous(16).unwrap();
    let (bytes, fds) = to_bytes_with_fds(&anon).unwrap();
    assert!(from_bytes_with_fds::<SharedMemory>(&bytes, fds).is_err());
}
