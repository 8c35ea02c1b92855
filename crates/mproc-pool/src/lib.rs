//! A process pool with map, imap and apply_async for mproc
