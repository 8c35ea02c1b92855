//! The tour of mproc: every part of the toolkit, briefly, with timings.
//!
//! ```sh
//! cargo run --release --example tour
//! ```

use std::error::Error;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mproc::managers::Dict;
use mproc::shm::SharedAtomicU64;
use mproc::{
    Array, Event, JoinableQueue, Lock, Manager, Pool, Process, Queue, StartMethod, Value,
    cpu_count, get_context, pipe,
};

type Res<T> = Result<T, Box<dyn Error>>;

fn section(title: &str) {
    println!("\n== {title} ==");
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// A child's share of the shared-memory work: bump the locked counter
/// `n` times and fill its slice of the array with squares.
fn shm_worker(
    (id, n, counter, fast, squares): (usize, u64, Value<u64>, SharedAtomicU64, Array<u64>),
) -> String {
    let t0 = Instant::now();
    for _ in 0..n {
        // The guard holds the lock: a read-modify-write no other process can interleave with.
        *counter.lock().expect("counter lock") += 1;
        fast.fetch_add(1, Ordering::Relaxed);
    }
    let chunk = squares.len() / 4;
    let start = id * chunk;
    let mine: Vec<u64> = (start..start + chunk)
        .map(|i| (i as u64) * (i as u64))
        .collect();
    squares.copy_from(start, &mine).expect("slice in range");
    format!(
        "child {id} (pid {}): {n} locked increments + {n} atomic ones, squares {start}..{} in {}",
        std::process::id(),
        start + chunk,
        ms(t0.elapsed())
    )
}

fn shared_memory() -> Res<()> {
    section("shared memory: a locked Value, a shared atomic and an Array, 4 children");
    let counter = Value::new(0u64)?;
    let fast = SharedAtomicU64::new(0)?;
    let squares = Array::<u64>::new(4_000)?;
    let t0 = Instant::now();
    let mut children = Vec::new();
    for id in 0..4 {
        let args = (
            id,
            25_000u64,
            counter.clone(),
            fast.clone(),
            squares.clone(),
        );
        children.push(
            Process::new(shm_worker, args)
                .name(format!("shm-{id}"))
                .start()?,
        );
    }
    for c in &mut children {
        println!("  {}", c.join()?);
    }
    let ok = squares
        .to_vec()
        .iter()
        .enumerate()
        .all(|(i, &v)| v == (i as u64) * (i as u64));
    println!(
        "  parent: counter = {} (expected 100000), atomic = {}, array of {} squares correct: {ok}, all in {}",
        counter.get(),
        fast.load(Ordering::Relaxed),
        squares.len(),
        ms(t0.elapsed())
    );
    Ok(())
}

fn start_methods() -> Res<()> {
    section("start methods: start + join of a trivial child");
    fn trivial(x: u32) -> u32 {
        x + 1
    }
    for method in [
        StartMethod::Fork,
        StartMethod::ForkServer,
        StartMethod::Spawn,
    ] {
        let ctx = get_context(method);
        // The first start of the fork server pays for its exec; time a few after it.
        ctx.process(trivial, 0).start()?.join()?;
        let n = 20;
        let t0 = Instant::now();
        for i in 0..n {
            assert_eq!(ctx.process(trivial, i).start()?.join()?, i + 1);
        }
        println!("  {method:?}: {} per child", ms(t0.elapsed() / n));
    }
    println!(
        "  (Fork works here because the tour is single-threaded; from a threaded parent it is refused.)"
    );
    Ok(())
}

fn locks() -> Res<()> {
    section("locks: ordered printing under a Lock, an Event to start together");
    fn greet((id, lock, go): (u32, Lock, Event)) {
        go.wait();
        let _g = lock.lock().expect("print lock");
        println!("  hello from child {id}, pid {}", std::process::id());
    }
    let lock = Lock::new()?;
    let go = Event::new()?;
    let mut children = Vec::new();
    for id in 0..3 {
        children.push(Process::new(greet, (id, lock.clone(), go.clone())).start()?);
    }
    go.set();
    for c in &mut children {
        c.join()?;
    }
    Ok(())
}

fn pipes_and_queues() -> Res<()> {
    section("pipes and queues");
    fn echo(conn: mproc::Connection) {
        while let Ok(msg) = conn.recv::<String>() {
            if conn.send(msg.to_uppercase()).is_err() {
                break;
            }
        }
    }
    let (here, there) = pipe(true)?;
    let mut child = Process::new(echo, there).start()?;
    let t0 = Instant::now();
    let n = 1_000;
    for i in 0..n {
        here.send(format!("ping {i}")).map_err(|e| e.to_string())?;
        let back: String = here.recv()?;
        assert_eq!(back, format!("PING {i}"));
    }
    println!(
        "  pipe: {n} round trips with a child, {} each",
        ms(t0.elapsed() / n)
    );
    drop(here);
    child.join()?;

    fn producer((q, n): (Queue<u64>, u64)) -> u64 {
        for i in 0..n {
            q.put(i).expect("put");
        }
        n * (n - 1) / 2
    }
    let q = Queue::<u64>::new(1024)?;
    let n = 200_000u64;
    let t0 = Instant::now();
    let mut p = Process::new(producer, (q.clone(), n)).start()?;
    let mut sum = 0;
    for _ in 0..n {
        sum += q.get()?;
    }
    let sent = p.join()?;
    let el = t0.elapsed();
    println!(
        "  queue: {n} u64 from a child, sums match: {} ({:.1} M msgs/s, including the child's start)",
        sum == sent,
        n as f64 / el.as_secs_f64() / 1e6
    );

    fn worker(q: JoinableQueue<String>) {
        while let Ok(job) = q.get() {
            if job == "stop" {
                q.task_done().expect("task_done");
                break;
            }
            q.task_done().expect("task_done");
        }
    }
    let jq = JoinableQueue::<String>::new(0)?;
    let mut w = Process::new(worker, jq.clone()).start()?;
    for i in 0..100 {
        jq.put(format!("job {i}")).map_err(|e| e.to_string())?;
    }
    jq.put("stop".to_owned()).map_err(|e| e.to_string())?;
    jq.join();
    w.join()?;
    println!("  joinable queue: 100 jobs done and acknowledged with task_done");
    Ok(())
}

fn square(x: u64) -> u64 {
    x * x
}

/// The seed program's work: one multiplication per number, kept alive by
/// black_box. Never inlined, so the serial loop and the workers call one
/// and the same compiled function.
#[inline(never)]
fn lots_of_math(n: u64) {
    std::hint::black_box(n * n);
}

/// Dies on item 3, the way a worker hit by the OOM killer or a segfault would.
fn fragile(x: u32) -> u32 {
    if x == 3 {
        std::process::abort();
    }
    x * 10
}

fn pool() -> Res<()> {
    section("pool: map of tiny tasks, the seed's lots_of_math, and a worker that dies");
    let t0 = Instant::now();
    let pool = Pool::new(2)?;
    println!("  Pool(2) started in {}", ms(t0.elapsed()));

    let data: Vec<u64> = (0..1_000_000).collect();
    let t0 = Instant::now();
    let squares = pool.map(square, data.clone())?;
    let el = t0.elapsed();
    assert_eq!(squares[999_999], 999_999 * 999_999);
    println!(
        "  map(square, 1M u64): {} ({:.0} M items/s)",
        ms(el),
        1e6 / el.as_secs_f64() / 1e6
    );

    // The seed's 40M items take ~50 ms, too few to see more than the
    // pool's start-up; 10x that shows the split.
    let n = 400_000_000u64;
    // Through a pointer the optimiser cannot see through, as the workers call it.
    let task: fn(u64) = std::hint::black_box(lots_of_math);
    let t0 = Instant::now();
    for i in 0..n {
        task(i);
    }
    let serial = t0.elapsed();
    let t0 = Instant::now();
    let p2 = Pool::new(2)?;
    p2.map(lots_of_math, 0..n)?;
    drop(p2);
    let parallel = t0.elapsed();
    println!(
        "  lots_of_math over 0..400M: serial {}, Pool(2) including its start-up {} ({:.2}x; at most {}x on {} CPUs)",
        ms(serial),
        ms(parallel),
        serial.as_secs_f64() / parallel.as_secs_f64(),
        cpu_count().min(2),
        cpu_count()
    );
    println!(
        "  (the seed asked why its pool was slower than the loop: one pickled task per number;"
    );
    println!("   mproc ships the range in a few adaptive chunks instead)");

    let t0 = Instant::now();
    let results: Vec<_> = pool.imap(fragile, 0..6u32)?.collect();
    for (i, r) in results.iter().enumerate() {
        match r {
            Ok(v) => println!("  fragile({i}) = {v}"),
            Err(e) => println!("  fragile({i}) failed: {e}"),
        }
    }
    println!(
        "  the pool replaced the dead worker and carries on: {:?} ({})",
        pool.apply(square, 12)?,
        ms(t0.elapsed())
    );
    pool.close();
    pool.join()?;
    Ok(())
}

fn count_visits((hits, worker): (Dict<String, u64>, u32)) {
    for _ in 0..100 {
        // Runs inside the manager's server: no lost update between processes.
        hits.update_or_insert_with(
            &"visits".to_owned(),
            &0,
            |v: &mut u64, by: u64| *v += by,
            1u64,
        )
        .expect("update in the server");
    }
    hits.insert(&format!("worker {worker}"), &100)
        .expect("insert");
}

const FRUIT: [&str; 6] = ["apple", "banana", "cherry", "damson", "elderberry", "fig"];

/// Runs in each child: adds its fruit, and counts itself under `"baskets"`.
fn pick((fruit, i): (Dict<String, u32>, usize)) -> Result<(), String> {
    let add = |name: &str| {
        fruit
            .update_or_insert_with(&name.to_owned(), &0, |n: &mut u32, k: u32| *n += k, 1)
            .map_err(|e| e.to_string())
    };
    add(FRUIT[i % FRUIT.len()])?;
    add("baskets")
}

/// Python's classic `Manager().dict()` demo: `workers` processes fill one
/// shared dict (each adds a fruit and counts itself); returns its items
/// sorted by name.
fn fruit_demo(workers: usize) -> Res<Vec<(String, u32)>> {
    let m = Manager::start()?;
    let fruit = m.dict::<String, u32>()?;
    let mut children = Vec::with_capacity(workers);
    for i in 0..workers {
        children.push(Process::new(pick, (fruit.clone(), i)).start()?);
    }
    for mut c in children {
        c.join()??;
    }
    let mut items = fruit.items()?;
    items.sort();
    assert!(items.contains(&("baskets".to_owned(), workers as u32)));
    m.shutdown()?;
    Ok(items)
}

fn manager() -> Res<()> {
    section("manager: a dict shared through a server process");
    let t0 = Instant::now();
    let m = Manager::start()?;
    println!("  manager started in {}", ms(t0.elapsed()));
    let hits = m.dict::<String, u64>()?;
    let mut children = Vec::new();
    for w in 0..3 {
        children.push(Process::new(count_visits, (hits.clone(), w)).start()?);
    }
    for c in &mut children {
        c.join()?;
    }
    let mut items = hits.items()?;
    items.sort();
    println!("  {items:?}");
    let fruit = fruit_demo(3)?;
    println!("  the seed's fruit dictionary, filled by 3 processes: {fruit:?}");
    let t0 = Instant::now();
    drop(m);
    println!("  manager shut down in {}", ms(t0.elapsed()));
    Ok(())
}

fn main() -> Res<()> {
    println!(
        "mproc tour: {} CPUs usable here (decided by {:?})",
        cpu_count(),
        mproc::process::cpu_count_source()
    );
    let t0 = Instant::now();
    shared_memory()?;
    start_methods()?;
    locks()?;
    pipes_and_queues()?;
    pool()?;
    manager()?;
    println!("\ntour finished in {}", ms(t0.elapsed()));
    Ok(())
}
