//! `distlock exec`: runs a command while holding the lock.

use std::process::ExitCode;

use distlock_host::{Client, Error};

use crate::exit;
use crate::output::tell;
use crate::{LockArgs, OnLost, builder, warn_if_embedded};

pub(crate) async fn exec(
    client: &Client,
    lock: &LockArgs,
    on_lost: OnLost,
    command: &[String],
) -> Result<ExitCode, Error> {
    warn_if_embedded(client, "exec");
    let guard = builder(client, lock).auto_renew(true).acquire().await?;
    let Some((program, args)) = command.split_first() else {
        return Ok(ExitCode::from(exit::USAGE));
    };
    let mut child = match tokio::process::Command::new(program)
        .args(args)
        .env("DISTLOCK_TOKEN", guard.token())
        .env(
            "DISTLOCK_FENCE",
            guard.fence().map(|f| f.to_string()).unwrap_or_default(),
        )
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            tell!("distlock: cannot run {program}: {e}");
            let _ = guard.release().await;
            let code = if e.kind() == std::io::ErrorKind::NotFound {
                exit::NOT_FOUND
            } else {
                exit::CANNOT_EXECUTE
            };
            return Ok(ExitCode::from(code));
        }
    };
    let status = tokio::select! {
        status = child.wait() => status,
        () = guard.lost() => match on_lost {
            OnLost::Kill => {
                tell!("distlock: lock '{}' lost; killing {program}", lock.name);
                let _ = child.kill().await;
                let _ = child.wait().await;
                return Ok(ExitCode::from(exit::NOT_ACQUIRED));
            }
            OnLost::Warn => {
                tell!("distlock: warning: lock '{}' lost; {program} runs on unprotected", lock.name);
                child.wait().await
            }
        },
    };
    if let Err(e) = guard.release().await {
        tell!("distlock: releasing '{}' failed: {e}", lock.name);
    }
    let code = match status {
        Ok(status) => status
            .code()
            .map_or(i32::from(exit::SIGNALLED) + signal_of(&status), |c| {
                c as u8 as i32
            }),
        Err(e) => {
            tell!("distlock: waiting for {program} failed: {e}");
            exit::UNAVAILABLE as i32
        }
    };
    Ok(ExitCode::from(code as u8))
}

#[cfg(unix)]
fn signal_of(status: &std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status.signal().unwrap_or(0)
}

#[cfg(not(unix))]
fn signal_of(_: &std::process::ExitStatus) -> i32 {
    0
}
