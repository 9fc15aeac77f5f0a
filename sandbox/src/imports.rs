//! The imports the sandbox provides: every function of WASI preview 1
//! (`wasi_snapshot_preview1`), as wasmtime-wasi links it in `wasi`, and
//! nothing else. The coordinator checks apps and custom validators against
//! this list when a project is submitted (with wasmparser, so it never links
//! wasmtime for that), and a test here checks that the list is exactly what
//! the sandbox's linker defines, so the two cannot drift apart.

/// The module name of WASI preview 1.
pub const WASI_PREVIEW1: &str = "wasi_snapshot_preview1";

/// `(module, name)` of every function an app may import. Sockets other than
/// the preview 1 ones (`sock_accept`, `sock_recv`, `sock_send`,
/// `sock_shutdown`, which fail at run time since no socket is ever open) do
/// not exist here, nor does anything outside WASI.
pub const PROVIDED_IMPORTS: &[(&str, &str)] = &[
    (WASI_PREVIEW1, "args_get"),
    (WASI_PREVIEW1, "args_sizes_get"),
    (WASI_PREVIEW1, "clock_res_get"),
    (WASI_PREVIEW1, "clock_time_get"),
    (WASI_PREVIEW1, "environ_get"),
    (WASI_PREVIEW1, "environ_sizes_get"),
    (WASI_PREVIEW1, "fd_advise"),
    (WASI_PREVIEW1, "fd_allocate"),
    (WASI_PREVIEW1, "fd_close"),
    (WASI_PREVIEW1, "fd_datasync"),
    (WASI_PREVIEW1, "fd_fdstat_get"),
    (WASI_PREVIEW1, "fd_fdstat_set_flags"),
    (WASI_PREVIEW1, "fd_fdstat_set_rights"),
    (WASI_PREVIEW1, "fd_filestat_get"),
    (WASI_PREVIEW1, "fd_filestat_set_size"),
    (WASI_PREVIEW1, "fd_filestat_set_times"),
    (WASI_PREVIEW1, "fd_pread"),
    (WASI_PREVIEW1, "fd_prestat_dir_name"),
    (WASI_PREVIEW1, "fd_prestat_get"),
    (WASI_PREVIEW1, "fd_pwrite"),
    (WASI_PREVIEW1, "fd_read"),
    (WASI_PREVIEW1, "fd_readdir"),
    (WASI_PREVIEW1, "fd_renumber"),
    (WASI_PREVIEW1, "fd_seek"),
    (WASI_PREVIEW1, "fd_sync"),
    (WASI_PREVIEW1, "fd_tell"),
    (WASI_PREVIEW1, "fd_write"),
    (WASI_PREVIEW1, "path_create_directory"),
    (WASI_PREVIEW1, "path_filestat_get"),
    (WASI_PREVIEW1, "path_filestat_set_times"),
    (WASI_PREVIEW1, "path_link"),
    (WASI_PREVIEW1, "path_open"),
    (WASI_PREVIEW1, "path_readlink"),
    (WASI_PREVIEW1, "path_remove_directory"),
    (WASI_PREVIEW1, "path_rename"),
    (WASI_PREVIEW1, "path_symlink"),
    (WASI_PREVIEW1, "path_unlink_file"),
    (WASI_PREVIEW1, "poll_oneoff"),
    (WASI_PREVIEW1, "proc_exit"),
    (WASI_PREVIEW1, "proc_raise"),
    (WASI_PREVIEW1, "random_get"),
    (WASI_PREVIEW1, "sched_yield"),
    (WASI_PREVIEW1, "sock_accept"),
    (WASI_PREVIEW1, "sock_recv"),
    (WASI_PREVIEW1, "sock_send"),
    (WASI_PREVIEW1, "sock_shutdown"),
];
