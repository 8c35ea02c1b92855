//! Process arguments and return values through each codec (`Postcard`,
//! `Pod`, `Bytes`, and one of the user's), in real children under every
//! start method.

#![cfg(target_os = "linux")] // needs Linux: processes, memfd segments, Linux-only calls

mod common;

use common::{each_method, method};
use mproc_process::{
    Bytes, Codec, CodecError, Encode, JoinError, Pod, Postcard, Process, ProcessHandle, StartError,
    StartMethod, active_children,
};

/// Joins `h`, checks that the child exited with 0 and is no longer among
/// this process's children, and returns its value.
fn join_clean<R>(mut h: ProcessHandle<R>) -> Result<R, String> {
    let pid = h.pid();
    let v = h.join().map_err(|e| e.to_string())?;
    ensure!(h.exitcode() == Some(0), "exit code {:?}", h.exitcode());
    ensure!(
        active_children().iter().all(|c| c.pid() != pid),
        "the joined child {pid:?} is still listed"
    );
    Ok(v)
}

/// Starts `p` with start method `m`; a failed start as its message.
fn start<F, A, R, C>(p: Process<F, A, C>, m: StartMethod) -> Result<ProcessHandle<R>, String>
where
    F: Fn(A) -> R + Copy + Send + 'static,
    C: Codec<A> + Codec<R>,
{
    p.start_method(m).start().map_err(|e| e.to_string())
}

fn scaled(v: [f64; 4]) -> [f64; 4] {
    v.map(|x| x * 2.0 + 0.5)
}

/// A plain-data struct with padding-free mixed fields.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Zeroable, bytemuck::Pod)]
struct Particle {
    pos: [f32; 3],
    id: u32,
    mass: f64,
}

fn moved(p: Particle) -> Particle {
    Particle {
        pos: [p.pos[0] + 1.0, p.pos[1] - 1.0, p.pos[2] * 3.0],
        id: p.id + 1,
        mass: p.mass / 2.0,
    }
}

fn count_bits(v: u64) -> u32 {
    v.count_ones()
}

fn pod(m: String) -> Result<(), String> {
    let m = method(&m);
    // Three children at once, each with a different plain type.
    let a = start(
        Process::new(scaled, [1.0, -2.0, 0.25, 1e300]).codec::<Pod>(),
        m,
    )?;
    let p = Particle {
        pos: [0.5, 2.0, -1.5],
        id: 41,
        mass: 3.0,
    };
    let b = start(Process::new(moved, p).codec::<Pod>(), m)?;
    let c = start(
        Process::new(count_bits, 0xF0F0_0000_0000_0001).codec::<Pod>(),
        m,
    )?;
    let got = join_clean(a)?;
    ensure!(got == [2.5, -3.5, 1.0, 2e300 + 0.5], "scaled gave {got:?}");
    let got = join_clean(b)?;
    let want = Particle {
        pos: [1.5, 1.0, -4.5],
        id: 42,
        mass: 1.5,
    };
    ensure!(got == want, "moved gave {got:?}");
    ensure!(join_clean(c)? == 9, "count_bits");
    Ok(())
}

#[test]
fn pod_arguments_and_results_travel_as_plain_data() {
    each_method(pod);
}

/// 1 MiB: far more than a socket buffer both ways (the result goes through
/// a memory file).
const MIB: usize = 1 << 20;

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8 ^ seed).collect()
}

fn flip(mut v: Vec<u8>) -> Vec<u8> {
    v.reverse();
    for b in &mut v {
        *b ^= 0x5a;
    }
    v.push(0xee);
    v
}

fn bytes(m: String) -> Result<(), String> {
    let m = method(&m);
    let arg = pattern(MIB, 3);
    let mut want = arg.clone();
    want.reverse();
    want.iter_mut().for_each(|b| *b ^= 0x5a);
    want.push(0xee);
    let h = start(Process::new(flip, arg).codec::<Bytes>(), m)?;
    let got = join_clean(h)?;
    ensure!(got.len() == MIB + 1, "length {}", got.len());
    ensure!(got == want, "the 1 MiB result differs");
    // Empty both ways, and small (inline) results.
    let h = start(Process::new(flip, Vec::new()).codec::<Bytes>(), m)?;
    ensure!(join_clean(h)? == [0xee], "empty");
    let h = start(Process::new(flip, vec![1, 2]).codec::<Bytes>(), m)?;
    ensure!(join_clean(h)? == [0x58, 0x5b, 0xee], "small");
    Ok(())
}

#[test]
fn a_mebibyte_of_bytes_goes_there_and_back() {
    each_method(bytes);
}

fn nothing(_: [u16; 2]) {}

fn sum_into_unit((a, b): (u64, u64)) {
    assert_eq!(a + b, 5, "the arguments arrived");
}

fn unit(m: String) -> Result<(), String> {
    let m = method(&m);
    // `()` is plain data of no bytes: the result frame has no payload.
    let h = start(Process::new(nothing, [1, 2]).codec::<Pod>(), m)?;
    join_clean(h)?;
    let h = start(Process::new(sum_into_unit, (2, 3)).codec::<Postcard>(), m)?;
    join_clean(h)?;
    // The same with the default codec, named or not.
    let h = start(Process::new(sum_into_unit, (1, 4)), m)?;
    join_clean(h)?;
    Ok(())
}

#[test]
fn a_unit_result_comes_back_with_each_codec() {
    each_method(unit);
}

/// A codec of the user's: a `u32` as 4 bytes, except that 13 refuses to
/// encode and 7 to decode.
struct Picky;

impl Encode<u32> for Picky {
    const TAG: &'static str = "picky";

    fn encode(value: &u32, out: &mut Vec<u8>) -> Result<(), CodecError> {
        if *value == 13 {
            return Err(CodecError::new("13 does not encode"));
        }
        out.extend_from_slice(&value.to_le_bytes());
        Ok(())
    }
}

impl Codec<u32> for Picky {
    fn decode(bytes: &[u8]) -> Result<u32, CodecError> {
        let b: [u8; 4] = bytes
            .try_into()
            .map_err(|_| CodecError::new("not 4 bytes"))?;
        match u32::from_le_bytes(b) {
            7 => Err(CodecError::new("7 does not decode")),
            v => Ok(v),
        }
    }
}

fn inc(x: u32) -> u32 {
    x + 1
}

fn picky(m: String) -> Result<(), String> {
    let m = method(&m);
    let p = |x| Process::new(inc, x).codec::<Picky>().start_method(m);
    // A value the codec takes both ways.
    ensure!(
        join_clean(p(40).start().map_err(|e| e.to_string())?)? == 41,
        "inc"
    );

    // Arguments that do not encode: no child.
    match p(13).start() {
        Err(e @ StartError::Encode(_)) => ensure!(
            e.to_string() == "failed to serialize the process arguments: 13 does not encode",
            "{e}"
        ),
        other => return Err(format!("start of 13 gave {other:?}")),
    }

    // Arguments that do not decode in the child: it reports why.
    let mut h = p(7).start().map_err(|e| e.to_string())?;
    match h.join() {
        Err(JoinError::Bootstrap { message, status }) => {
            ensure!(
                message == "failed to decode the process arguments: 7 does not decode",
                "{message}"
            );
            ensure!(status.exitcode() == 1, "{status}");
        }
        other => return Err(format!("join of 7 gave {other:?}")),
    }

    // A result that does not encode in the child.
    let mut h = p(12).start().map_err(|e| e.to_string())?;
    match h.join() {
        Err(JoinError::Bootstrap { message, .. }) => ensure!(
            message == "failed to encode the return value: 13 does not encode",
            "{message}"
        ),
        other => return Err(format!("join of 12 gave {other:?}")),
    }

    // A result that does not decode here: the error says so, every time.
    let mut h = p(6).start().map_err(|e| e.to_string())?;
    let want = "the child process sent an invalid result: the return value did not decode: \
                7 does not decode";
    for _ in 0..2 {
        match h.join() {
            Err(e @ JoinError::Decode(_)) => ensure!(e.to_string() == want, "{e}"),
            other => return Err(format!("join of 6 gave {other:?}")),
        }
    }
    ensure!(h.exitcode() == Some(0), "the child itself succeeded");
    Ok(())
}

#[test]
fn a_codec_of_the_users_reports_its_errors_on_both_sides() {
    each_method(picky);
}
