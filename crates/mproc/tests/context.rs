//! Contexts fix the start method of everything made through them; builders
//! without one follow the process-wide default; the process authkey is the
//! manager's default key.

use std::net::SocketAddr;
use std::process::Command;

use mproc::{
    Manager, Pool, Process, StartMethod, current_process, default_context, get_context,
    set_start_method,
};
use mproc_testkit::watchdog_secs as watchdog;

fn my_method(_: ()) -> Option<StartMethod> {
    current_process().start_method()
}

/// The parent pid of `pid` (field 4 of `/proc/<pid>/stat`).
fn ppid(pid: u32) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    after.split(' ').nth(1).unwrap().parse().unwrap()
}

/// Whether a manager's server was spawned by this process (rather than
/// forked by its fork server).
fn server_is_our_child(m: &Manager) -> bool {
    ppid(m.pid().expect("a local server").as_raw() as u32) == std::process::id()
}

fn worker_methods(pool: &Pool) -> Vec<Option<StartMethod>> {
    pool.map(|_: u32| current_process().start_method(), vec![0, 1])
        .unwrap()
}

fn halves(v: [f64; 2]) -> [f64; 2] {
    v.map(|x| x / 2.0)
}

#[test]
fn a_context_process_takes_a_codec() {
    watchdog(120, || {
        for m in [StartMethod::ForkServer, StartMethod::Spawn] {
            let p = get_context(m).process(halves, [3.0, -1.0]);
            let mut h = p.codec::<mproc::codec::Pod>().start().unwrap();
            assert_eq!(h.join().unwrap(), [1.5, -0.5], "{m}");
        }
    });
}

#[test]
fn a_context_fixes_the_start_method_of_everything_it_makes() {
    watchdog(120, || {
        for m in [StartMethod::ForkServer, StartMethod::Spawn] {
            let ctx = get_context(m);
            assert_eq!(ctx.start_method(), m);
            let mut h = ctx.process(my_method, ()).start().unwrap();
            assert_eq!(h.join().unwrap(), Some(m));
            let pool = ctx.pool().processes(1).build().unwrap();
            assert_eq!(worker_methods(&pool), [Some(m), Some(m)]);
            drop(pool);
            let manager = ctx.manager().start().unwrap();
            assert_eq!(
                server_is_our_child(&manager),
                m == StartMethod::Spawn,
                "{m}"
            );
            manager.shutdown().unwrap();
            // The objects that start nothing work across its processes too.
            let q = ctx.queue::<u32>(0).unwrap();
            let lock = ctx.lock().unwrap();
            drop(lock.lock().unwrap());
            q.put(5).unwrap();
            assert_eq!(q.get().unwrap(), 5);
            assert_eq!(mproc::process::Context::from(ctx).start_method(), m);
        }
    });
}

#[test]
#[ignore = "role of builders_without_a_method_follow_set_start_method"]
fn role_builders_follow_the_default() {
    set_start_method(StartMethod::Spawn).unwrap();
    assert_eq!(
        default_context().unwrap().start_method(),
        StartMethod::Spawn
    );
    let mut h = Process::new(my_method, ()).start().unwrap();
    assert_eq!(h.join().unwrap(), Some(StartMethod::Spawn));
    let pool = Pool::builder().processes(1).build().unwrap();
    assert_eq!(worker_methods(&pool), [Some(StartMethod::Spawn); 2]);
    drop(pool);
    let manager = Manager::builder().start().unwrap();
    assert!(server_is_our_child(&manager), "the server was not spawned");
    manager.shutdown().unwrap();
}

#[test]
fn builders_without_a_method_follow_set_start_method() {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "role_builders_follow_the_default", "--ignored"]);
    cmd.env_remove(mproc::process::START_METHOD_ENV);
    let out = watchdog(120, move || cmd.output().unwrap());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("1 passed"), "{out:?}");
}

/// A child connects to its parent's manager knowing only the address: the
/// key is the authkey it inherited.
fn use_parents_manager(addr: String) -> u32 {
    let addr: SocketAddr = addr.parse().unwrap();
    let m = Manager::builder()
        .address(addr)
        .connect()
        .expect("connect without a key");
    m.value(41u32).unwrap().get().unwrap() + 1
}

#[test]
fn a_child_reaches_its_parents_manager_with_the_inherited_authkey() {
    watchdog(120, || {
        // TCP, the address a remote client would use too.
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let manager = Manager::builder().address(any).start().unwrap();
        let addr = match manager.address() {
            mproc::managers::Address::Tcp(a) => *a,
            other => panic!("bound {other:?}"),
        };
        for m in [StartMethod::ForkServer, StartMethod::Spawn] {
            let mut h = Process::new(use_parents_manager, addr.to_string())
                .start_method(m)
                .start()
                .unwrap();
            assert_eq!(h.join().unwrap(), 42, "{m}");
        }
        // Another key is refused.
        assert!(Manager::connect(addr, b"not the process key").is_err());
        manager.shutdown().unwrap();
    });
}
