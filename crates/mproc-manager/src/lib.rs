//! A manager server with typed proxies, local and remote, for mproc
