//! Interoperability with the real CPython: its `multiprocessing.connection`
//! Listener and Client against ours, with authkeys, both directions.
//!
//! Skipped (with a message) when `python3` is not installed. Python 3.11 and
//! older speak only the legacy HMAC-MD5 handshake; the "modern" tests install
//! CPython 3.12's handshake into older Pythons so the `{sha256}` form is
//! exercised against a Python implementation on every version.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{pattern, watchdog};
use mproc_pipe::{Address, AuthError, Client, ConnectError, Connection, Listener};
use mproc_testkit::TestChild;

const PY: &str = r#"
import hmac, os, sys, tempfile
from multiprocessing import connection as mc
from multiprocessing import AuthenticationError

def install_modern():
    # CPython 3.12's handshake (gh-61460); strict: only {sha256} answers pass.
    allowed = {b'md5', b'sha256', b'sha384', b'sha3_256', b'sha3_384'}
    def split(message):
        if len(message) in (20, 16):
            return '', message
        if message.startswith(b'{'):
            curly = message.find(b'}', 1, 10)
            if curly > 0 and message[1:curly] in allowed:
                return message[1:curly].decode('ascii'), message[curly + 1:]
        raise AuthenticationError('unsupported message')
    def deliver_challenge(c, authkey, digest_name='sha256'):
        message = b'{%s}%s' % (digest_name.encode('ascii'), os.urandom(40))
        c.send_bytes(b'#CHALLENGE#' + message)
        response = c.recv_bytes(256)
        name, mac = split(response)
        expected = hmac.new(authkey, message, name or 'md5').digest()
        if name != 'sha256' or not hmac.compare_digest(expected, mac):
            c.send_bytes(b'#FAILURE#')
            raise AuthenticationError('digest received was wrong')
        c.send_bytes(b'#WELCOME#')
    def answer_challenge(c, authkey):
        message = c.recv_bytes(256)
        if not message.startswith(b'#CHALLENGE#'):
            raise AuthenticationError('expected challenge')
        message = message[11:]
        name = split(message)[0]
        if name != 'sha256':
            raise AuthenticationError('expected a modern challenge')
        c.send_bytes(b'{sha256}' + hmac.new(authkey, message, 'sha256').digest())
        if c.recv_bytes(256) != b'#WELCOME#':
            raise AuthenticationError('digest sent was rejected')
    mc.deliver_challenge = deliver_challenge
    mc.answer_challenge = answer_challenge

def echo(c):
    while True:
        try:
            m = c.recv_bytes()
        except EOFError:
            break
        c.send_bytes(b'py:' + m)
    print('DONE', flush=True)

role, mode, family, key = sys.argv[1:5]
key = None if key == '-' else key.encode()
if mode == 'modern':
    install_modern()
if role == 'server':
    if family == 'tcp':
        addr = ('127.0.0.1', 0)
    elif family == 'abstract':
        addr = '\0mproc-py-%d' % os.getpid()
    else:
        tmp = tempfile.mkdtemp()
        addr = os.path.join(tmp, 'sock')
    try:
        with mc.Listener(addr, authkey=key) as l:
            a = l.address
            if isinstance(a, bytes):  # CPython's form of an abstract name
                a = a.decode()
            if family == 'tcp':
                print('tcp %s %d' % a, flush=True)
            else:
                print('unix ' + a.replace('\0', '@', 1), flush=True)
            try:
                c = l.accept()
            except AuthenticationError as e:
                print('AUTHFAIL', e, flush=True)
                sys.exit(3)
            echo(c)
    finally:
        if family == 'unix':
            os.rmdir(tmp)
else:
    addr = (sys.argv[5], int(sys.argv[6])) if family == 'tcp' else sys.argv[5]
    if family == 'unix' and addr.startswith('@'):
        addr = '\0' + addr[1:]  # an abstract name, CPython's spelling
    try:
        c = mc.Client(addr, authkey=key)
    except AuthenticationError as e:
        print('AUTHFAIL', e, flush=True)
        sys.exit(3)
    c.send_bytes(b'hello from python')
    echo(c)
"#;

/// A python3 child: killed and reaped if the test fails early.
struct Py {
    child: TestChild,
    out: BufReader<std::process::ChildStdout>,
}

impl Py {
    fn start(args: &[&str]) -> Option<Self> {
        let mut child = match Command::new("python3")
            .arg("-c")
            .arg(PY)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                eprintln!("SKIPPED: python3 is not available ({e})");
                return None;
            }
        };
        let out = BufReader::new(child.stdout.take().expect("piped stdout"));
        Some(Self {
            child: TestChild::new(child, "python3"),
            out,
        })
    }

    fn line(&mut self) -> String {
        let mut s = String::new();
        self.out.read_line(&mut s).expect("read python output");
        s.trim_end().to_owned()
    }

    /// Waits (at most 30 s) and returns the exit code.
    fn finish(mut self) -> i32 {
        let stderr = self.child.child_mut().stderr.take();
        let st = self.child.wait(Duration::from_secs(30));
        if !st.success() {
            let mut err = String::new();
            if let Some(mut e) = stderr {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            eprintln!("python stderr:\n{err}");
        }
        st.code().unwrap_or(-1)
    }
}

fn parse_address(line: &str) -> Address {
    let mut parts = line.split(' ');
    match parts.next() {
        Some("tcp") => {
            let host = parts.next().expect("host");
            let port: u16 = parts.next().expect("port").parse().expect("port number");
            Address::Tcp(format!("{host}:{port}").parse().expect("socket address"))
        }
        // A path, or `@name` for an abstract name.
        Some("unix") => parts.next().expect("path").parse().expect("address"),
        _ => panic!("unexpected python output {line:?}"),
    }
}

fn exchange(c: &Connection) {
    for msg in [
        b"hello".to_vec(),
        Vec::new(),
        vec![7],
        pattern(100_000),
        pattern(3 << 20),
    ] {
        c.send_bytes(&msg).unwrap();
        let back = c.recv_bytes().unwrap();
        assert!(
            back.starts_with(b"py:") && back[3..] == msg[..],
            "echo of {} bytes",
            msg.len()
        );
    }
    let mut buf = vec![0u8; 64];
    c.send_bytes(b"into").unwrap();
    assert_eq!(c.recv_bytes_into(&mut buf).unwrap(), 7);
    assert_eq!(&buf[..7], b"py:into");
}

/// A Python listener (`mode`, `family`, the key `secret`) and the address
/// it printed; `None` (with a message) without python3.
fn python_listener(mode: &str, family: &str) -> Option<(Py, Address)> {
    let mut py = Py::start(&["server", mode, family, "secret"])?;
    let addr = parse_address(&py.line());
    Some((py, addr))
}

/// A Python Unix listener (`mode`, the key `secret`) refusing our client
/// (its key `key`, `allow_legacy`) for the reason `why`: the Python
/// child; `None` without python3.
fn refused_by_python_listener(
    mode: &str,
    key: &[u8],
    allow_legacy: bool,
    why: AuthError,
) -> Option<Py> {
    let (py, addr) = python_listener(mode, "unix")?;
    let err = Client::new(addr)
        .authkey(key)
        .allow_legacy_md5(allow_legacy)
        .connect()
        .unwrap_err();
    assert!(
        matches!(&err, ConnectError::Auth(e) if *e == why),
        "{mode}: {err:?}"
    );
    Some(py)
}

/// A Unix listener with the key `secret` (`allow_legacy`: `None` keeps the
/// default) refusing a Python client (`mode`, its key `key`, `-` for none)
/// for the reason `why`: the error `accept` returned, and the client;
/// `None` without python3.
fn refused_python_client(
    mode: &str,
    key: &str,
    allow_legacy: Option<bool>,
    why: AuthError,
) -> Option<(ConnectError, Py)> {
    let mut b = Listener::builder_auto().authkey(b"secret");
    if let Some(allow) = allow_legacy {
        b = b.allow_legacy_md5(allow);
    }
    let l = b.bind().unwrap();
    let at = l.address().to_string();
    let py = Py::start(&["client", mode, "unix", key, &at])?;
    let err = l.accept().unwrap_err();
    assert!(
        matches!(&err, ConnectError::Auth(e) if *e == why),
        "{mode}: {err:?}"
    );
    Some((err, py))
}

/// Connects our client to a Python listener (`allow_legacy`: `None` keeps
/// the default); `None` without python3.
fn rust_client_to_python(
    mode: &'static str,
    family: &'static str,
    allow_legacy: Option<bool>,
) -> Option<(Connection, Py)> {
    let (py, addr) = python_listener(mode, family)?;
    let mut client = Client::new(addr).authkey(b"secret");
    if let Some(allow) = allow_legacy {
        client = client.allow_legacy_md5(allow);
    }
    Some((client.connect().unwrap(), py))
}

/// Accepts a Python client on our listener (`allow_legacy`: `None` keeps
/// the default), which greets first; `None` without python3.
fn python_client_to_rust(
    mode: &'static str,
    family: &'static str,
    allow_legacy: Option<bool>,
) -> Option<(Connection, Py)> {
    let b = match family {
        "tcp" => Listener::builder("127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap()),
        _ => Listener::builder_auto(),
    };
    let mut b = b.authkey(b"secret");
    if let Some(allow) = allow_legacy {
        b = b.allow_legacy_md5(allow);
    }
    let l = b.bind().unwrap();
    let args: Vec<String> = match l.address() {
        Address::Tcp(a) => vec![a.ip().to_string(), a.port().to_string()],
        // A path, or an abstract name as `@name`.
        a => vec![a.to_string()],
    };
    let mut all = vec!["client", mode, family, "secret"];
    all.extend(args.iter().map(String::as_str));
    let py = Py::start(&all)?;
    let c = l.accept().unwrap();
    assert_eq!(c.recv_bytes().unwrap(), b"hello from python");
    Some((c, py))
}

/// How a test connects to a Python peer: [`rust_client_to_python`] or
/// [`python_client_to_rust`].
type Connect = fn(&'static str, &'static str, Option<bool>) -> Option<(Connection, Py)>;

/// Connects to an echoing Python peer with `connect` (`allow_legacy`:
/// `None` keeps the default), runs the [`exchange`], closes, and sees
/// Python finish cleanly.
fn echo_with_python(
    connect: Connect,
    mode: &'static str,
    family: &'static str,
    allow_legacy: Option<bool>,
) {
    watchdog(60, move || {
        let Some((c, mut py)) = connect(mode, family, allow_legacy) else {
            return;
        };
        exchange(&c);
        drop(c);
        assert_eq!(py.line(), "DONE");
        assert_eq!(py.finish(), 0);
    });
}

/// The echo test, our client to a Python listener; legacy HMAC-MD5
/// allowed exactly in the `legacy` mode.
fn rust_client_python_listener(mode: &'static str, family: &'static str) {
    echo_with_python(rust_client_to_python, mode, family, Some(mode == "legacy"));
}

/// As [`rust_client_python_listener`], the other way round.
fn python_client_rust_listener(mode: &'static str, family: &'static str) {
    echo_with_python(python_client_to_rust, mode, family, Some(mode == "legacy"));
}

#[test]
fn rust_client_python_listener_unix_modern() {
    rust_client_python_listener("modern", "unix");
}

#[test]
fn rust_client_python_listener_tcp_modern() {
    rust_client_python_listener("modern", "tcp");
}

#[test]
fn rust_client_python_listener_abstract_modern() {
    rust_client_python_listener("modern", "abstract");
}

#[test]
fn rust_client_python_listener_native_handshake() {
    // Python's own handshake: legacy HMAC-MD5 before 3.12, {sha256} from 3.12.
    rust_client_python_listener("legacy", "unix");
}

#[test]
fn python_client_rust_listener_unix_modern() {
    python_client_rust_listener("modern", "unix");
}

#[test]
fn python_client_rust_listener_tcp_modern() {
    python_client_rust_listener("modern", "tcp");
}

#[test]
fn python_client_rust_listener_native_handshake() {
    python_client_rust_listener("legacy", "tcp");
}

#[test]
fn wrong_key_fails_on_both_sides_rust_client() {
    for mode in ["modern", "legacy"] {
        watchdog(60, move || {
            // Python rejects our answer to its challenge.
            let Some(mut py) =
                refused_by_python_listener(mode, b"wrong", true, AuthError::Rejected)
            else {
                return;
            };
            assert!(py.line().starts_with("AUTHFAIL"));
            assert_eq!(py.finish(), 3);
        });
    }
}

#[test]
fn wrong_key_fails_on_both_sides_python_client() {
    for mode in ["modern", "legacy"] {
        watchdog(60, move || {
            let Some((err, mut py)) =
                refused_python_client(mode, "wrong", Some(true), AuthError::WrongDigest)
            else {
                return;
            };
            assert!(err.to_string().contains("digest received was wrong"));
            assert!(py.line().starts_with("AUTHFAIL"));
            assert_eq!(py.finish(), 3);
        });
    }
}

/// Whether `python3` speaks only the legacy handshake (3.11 and older);
/// `None` (with a message) when the test does not apply.
fn legacy_python() -> Option<()> {
    let out = match Command::new("python3")
        .args(["-c", "import sys; print(sys.version_info >= (3, 12))"])
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            eprintln!("SKIPPED: python3 is not available ({e})");
            return None;
        }
    };
    if String::from_utf8_lossy(&out.stdout).trim() == "True" {
        eprintln!("SKIPPED: python3 speaks the modern handshake natively");
        return None;
    }
    Some(())
}

/// CPython 3.12+ authenticates 3.11 peers (legacy HMAC-MD5) by default;
/// so does mproc, in both roles, with no option set.
#[test]
fn legacy_python_authenticates_by_default() {
    if legacy_python().is_none() {
        return;
    }
    echo_with_python(rust_client_to_python, "legacy", "unix", None);
    echo_with_python(python_client_to_rust, "legacy", "unix", None);
}

#[test]
fn legacy_python_is_refused_when_disabled() {
    watchdog(60, || {
        if legacy_python().is_none() {
            return;
        }
        let Some(mut py) =
            refused_by_python_listener("legacy", b"secret", false, AuthError::LegacyMd5Disabled)
        else {
            return;
        };
        // Python then sees the connection close during its handshake.
        let _ = py.line();
        assert_ne!(py.finish(), 0);

        refused_python_client(
            "legacy",
            "secret",
            Some(false),
            AuthError::LegacyMd5Disabled,
        );
    });
}

#[test]
fn keyless_python_client_is_named_at_accept() {
    watchdog(60, || {
        // CPython's Client without an authkey sends its first message where
        // the answer to our challenge belongs.
        refused_python_client("modern", "-", None, AuthError::AnswerExpected);
    });
}

#[test]
fn keyless_rust_client_is_told_the_python_listener_wants_a_key() {
    watchdog(60, || {
        let Some((py, addr)) = python_listener("modern", "unix") else {
            return;
        };
        let c = Client::new(addr).connect().unwrap();
        let e = c.recv_bytes().unwrap_err();
        assert_eq!(
            e.to_string(),
            "protocol error: the listener requires an authkey and none was given"
        );
        drop(c);
        // Python sees the connection close during its handshake.
        assert_ne!(py.finish(), 0);
    });
}
