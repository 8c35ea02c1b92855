//! The tour's "fruit dictionary": a manager dict filled by several processes.

use mproc_process::Process;

use crate::dict::Dict;
use crate::error::Error;
use crate::manager::Manager;

const FRUIT: [&str; 6] = ["apple", "banana", "cherry", "damson", "elderberry", "fig"];

/// Runs in each child: adds its fruit, and counts itself under `"baskets"`.
fn pick((fruit, i): (Dict<String, u32>, usize)) -> Result<(), String> {
    let name = FRUIT[i % FRUIT.len()].to_string();
    fruit
        .update_or_insert_with(&name, &0, 1, |n: &mut u32, k: u32| *n += k)
        .map_err(|e| e.to_string())?;
    fruit
        .update_or_insert_with(&"baskets".to_string(), &0, 1, |n: &mut u32, k: u32| *n += k)
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// Starts a manager, lets `workers` processes fill one shared dict (each
/// adds a fruit and counts itself), and returns the dict's items sorted by
/// name, for the caller to print (Python's classic `Manager().dict()` demo).
///
/// # Errors
/// [`Error::Start`] if a process cannot start, [`Error::Remote`] if a child
/// failed, and the manager's own errors.
///
/// # Examples
///
/// ```
/// let items = mproc_manager::fruit_demo(4)?;
/// assert!(items.contains(&("baskets".to_string(), 4)));
/// # Ok::<(), mproc_manager::Error>(())
/// ```
pub fn fruit_demo(workers: usize) -> Result<Vec<(String, u32)>, Error> {
    let m = Manager::start()?;
    let fruit = m.dict::<String, u32>()?;
    let mut children = Vec::with_capacity(workers);
    for i in 0..workers {
        children.push(
            Process::new(pick, (fruit.clone(), i))
                .start()
                .map_err(Error::Start)?,
        );
    }
    for mut c in children {
        match c.join() {
            Ok(Ok(())) => {}
            Ok(Err(msg)) => return Err(Error::Remote(msg)),
            Err(e) => return Err(Error::Remote(format!("a fruit picker failed: {e}"))),
        }
    }
    let mut items = fruit.items()?;
    items.sort();
    m.shutdown()?;
    Ok(items)
}
