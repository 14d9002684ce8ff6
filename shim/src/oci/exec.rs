//! `exec`: runs another process in a running Linux container; refused for a Wasm container, whose
//! only process is the engine running its guest (there is no second program to start in it).

use anyhow::{Context, Result, bail};
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::workload::default::DefaultExecutor;
use liboci_cli::Exec;
use nix::sys::wait::{WaitStatus, waitpid};

use super::{Global, load_container, runs_wasm_guest};

pub fn exec(args: Exec, global: &Global) -> Result<i32> {
    let container = load_container(&args.container_id, global)?;
    if !container.can_exec() {
        bail!("container {} is {}, not running: nothing to exec into", args.container_id, container.status());
    }
    if runs_wasm_guest(&container)? {
        bail!(
            "exec is not supported for Wasm container {}: its only process is the engine running its guest",
            args.container_id
        );
    }
    if args.cgroup.is_some() || args.apparmor.is_some() || args.process_label.is_some() {
        bail!("exec --cgroup, --apparmor and --process-label are not supported");
    }
    let (user, group) = match args.user {
        Some((user, group)) => (Some(user), group),
        None => (None, None),
    };
    let pid = ContainerBuilder::new(args.container_id.clone(), SyscallType::default())
        .with_executor(DefaultExecutor {})
        .with_root_path(&global.root)?
        .with_console_socket(args.console_socket.as_ref())
        .with_pid_file(args.pid_file.as_ref())?
        .with_preserved_fds(args.preserve_fds)
        .validate_id()?
        .as_tenant()
        .with_detach(args.detach)
        .with_cwd(args.cwd.as_ref())
        .with_env(args.env.into_iter().collect())
        .with_process(args.process.as_ref())
        .with_no_new_privs(args.no_new_privs)
        .with_container_args(args.command)
        .with_additional_gids(args.additional_gids)
        .with_user(user)
        .with_group(group)
        .with_capabilities(args.cap)
        .build()
        .with_context(|| format!("exec in container {}", args.container_id))?;
    if args.detach {
        return Ok(0);
    }
    Ok(match waitpid(pid, None).context("waiting for the exec'd process")? {
        WaitStatus::Exited(_, status) => status,
        WaitStatus::Signaled(_, signal, _) => 128 + signal as i32,
        _ => 0,
    })
}
